package connlimit

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"erg/internal/testkit"
)

// greeted reports whether the server side accepted c: the test server
// writes "ok" to every connection it gets; a refused one is closed.
func greeted(t testing.TB, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 2)
	_, err := io.ReadFull(c, b)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection was neither served nor closed")
	}
	return err == nil && string(b) == "ok"
}

func TestLimitListenerCapsOverallAndPerAddress(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := New(inner, 3, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			accepted <- c
		}
	}()
	addr := inner.Addr().String()

	for i := range 2 {
		if !greeted(t, testkit.DialFrom(t, "127.0.0.1", addr)) {
			t.Fatalf("connection %d from 127.0.0.1 refused under the cap", i+1)
		}
	}
	if greeted(t, testkit.DialFrom(t, "127.0.0.1", addr)) {
		t.Error("a third connection from 127.0.0.1 was accepted over the per-address cap of 2")
	}
	if !greeted(t, testkit.DialFrom(t, "127.0.0.2", addr)) {
		t.Fatal("another address was refused while the first was at its cap")
	}
	if greeted(t, testkit.DialFrom(t, "127.0.0.3", addr)) {
		t.Error("a fourth connection was accepted over the overall cap of 3")
	}
	if open, peak, refused := ln.Stats(); open != 3 || peak != 3 || refused != 2 {
		t.Errorf("open %d, peak %d, refused %d; want 3, 3, 2", open, peak, refused)
	}

	// Closing a connection frees its slot, once however often it is closed.
	c := <-accepted
	c.Close()
	c.Close()
	if open, _, _ := ln.Stats(); open != 2 {
		t.Errorf("open %d after closing one, want 2", open)
	}
	if !greeted(t, testkit.DialFrom(t, "127.0.0.3", addr)) {
		t.Error("a freed slot was not given to the next connection")
	}
	if open, peak, _ := ln.Stats(); open != 3 || peak != 3 {
		t.Errorf("open %d, peak %d; want 3, 3", open, peak)
	}
}

func TestClientIPGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	a := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}
	b := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 2}
	c := &net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 3}
	if clientIP(a) != clientIP(b) || clientIP(a) == clientIP(c) {
		t.Errorf("clientIP: %s %s %s", clientIP(a), clientIP(b), clientIP(c))
	}
	if got := clientIP(&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 9}); got != "127.0.0.2" {
		t.Errorf("clientIP(127.0.0.2:9) = %s", got)
	}
}

// TestConnOffersItsSocket: the grain loop reads and writes a web port
// connection with raw calls (forward.Socket), which needs its socket.
func TestConnOffersItsSocket(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := New(inner, 3, 2)
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatal("a capped connection hides its socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(f uintptr) { fd = f })
	if fd == 0 {
		t.Fatal("no descriptor behind the connection")
	}
}
