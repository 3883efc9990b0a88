package forward

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSocketCarriesBytesBothWays sends more than the kernel's buffers
// hold each way at once, so that both sides wait for room and for data.
func TestSocketCarriesBytesBothWays(t *testing.T) {
	a, b := tcpPair(t)
	sa, sb := NewSocket(a), NewSocket(b)
	if sa == nil || sb == nil {
		t.Fatal("a TCP connection has no Socket")
	}
	const size = 16 << 20
	ab, ba := make([]byte, size), make([]byte, size)
	rand.Read(ab)
	rand.Read(ba)
	errs := make(chan error, 2)
	go func() { _, err := sa.Write(ab); errs <- err }()
	go func() { _, err := sb.Write(ba); errs <- err }()
	gotB, gotA := make([]byte, size), make([]byte, size)
	readErr := make(chan error, 1)
	go func() { _, err := io.ReadFull(sb, gotB); readErr <- err }()
	if _, err := io.ReadFull(sa, gotA); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotB, ab) || !bytes.Equal(gotA, ba) {
		t.Fatal("the bytes read are not those written")
	}
}

func TestSocketEOFDeadlineAndClosed(t *testing.T) {
	a, b := tcpPair(t)
	sa := NewSocket(a)

	// The connection's read deadline holds for a Socket's Read.
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, err := sa.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("the read gave up after %v, before its deadline", d)
	}
	a.SetReadDeadline(time.Time{})

	// What the peer wrote before it closed, then io.EOF.
	b.Write([]byte("last"))
	b.Close()
	got, err := io.ReadAll(sa)
	if err != nil || string(got) != "last" {
		t.Fatalf("read %q, %v", got, err)
	}
	// Writing to a peer that has gone fails (at once or on a later
	// write, once its reset has come back) and does not hang.
	var werr error
	for range 100 {
		if _, werr = sa.Write([]byte("x")); werr != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if werr == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}

	// A read waiting when its connection is closed ends.
	c, d := tcpPair(t)
	sc := NewSocket(c)
	done := make(chan error, 1)
	go func() { _, err := sc.Read(make([]byte, 10)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read kept waiting after its connection was closed")
	}
	_ = d
}

// TestSocketNeverBypassesAWrapper: a connection that hands out bytes of
// its own (read ahead, or rewritten) has no Socket, even when it wraps a
// TCP connection that has one.
func TestSocketNeverBypassesAWrapper(t *testing.T) {
	a, _ := tcpPair(t)
	wrapped := struct{ net.Conn }{a}
	if NewSocket(wrapped) != nil {
		t.Fatal("a wrapper's reads would be bypassed")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if NewSocket(p1) != nil {
		t.Fatal("a pipe has no socket")
	}
}
