package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestListenIsOwnerOnlyAndConnectable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "erg.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket 0600", fi.Mode())
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("read: %q %v", b, err)
	}
	c.Close()
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// Files other goroutines make while sockets are being bound keep the
// modes they asked for: the listen must not narrow the process's umask.
func TestListenLeavesOtherFilesModesAlone(t *testing.T) {
	dir := t.TempDir()
	var stop atomic.Bool
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			p := filepath.Join(dir, "file"+string(rune('a'+w)))
			for !stop.Load() {
				os.Remove(p)
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					continue
				}
				if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o644&^currentUmask {
					wrong.Add(1)
				}
			}
		})
	}
	for i := range 300 {
		ln, err := Listen(filepath.Join(dir, "s"+string(rune('a'+i%26))))
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	stop.Store(true)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d files made during the listens lost mode bits", n)
	}
}
