package grains

import (
	"bytes"
	"testing"
)

func TestRingLogKeepsTheNewestBytes(t *testing.T) {
	t.Parallel()
	l := newRingLog(8)
	l.Write([]byte("abc"))
	if got := l.Bytes(); string(got) != "abc" {
		t.Fatalf("got %q", got)
	}
	l.Write([]byte("defghij"))
	if got := l.Bytes(); string(got) != "cdefghij" {
		t.Fatalf("after wrap got %q", got)
	}
	n, _ := l.Write(bytes.Repeat([]byte("x"), 20))
	if n != 20 {
		t.Errorf("Write returned %d, want 20", n)
	}
	if got := l.Bytes(); string(got) != "xxxxxxxx" {
		t.Fatalf("after a long write got %q", got)
	}
}
