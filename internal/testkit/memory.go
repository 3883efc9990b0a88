package testkit

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ProcessHolds reports whether any readable mapping of process pid's
// memory contains one of secrets (say, the forms a private key could be
// found in). It needs root for another user's process, and fails the
// test when it could read too little of the memory to tell.
func ProcessHolds(t testing.TB, pid int, secrets [][]byte) bool {
	t.Helper()
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	sc := bufio.NewScanner(maps)
	scanned := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		if end-start > 1<<30 {
			continue // reserved arena address space, not resident data
		}
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		scanned += n
		for _, s := range secrets {
			if bytes.Contains(buf[:n], s) {
				return true
			}
		}
	}
	if scanned < 1<<20 {
		t.Fatalf("read only %d bytes of process %d's memory", scanned, pid)
	}
	return false
}

// FilesHolding lists the regular files below dir whose contents hold one
// of secrets: the disk's side of ProcessHolds.
func FilesHolding(dir string, secrets [][]byte) []string {
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, s := range secrets {
			if bytes.Contains(data, s) {
				found = append(found, p)
				break
			}
		}
		return nil
	})
	return found
}
