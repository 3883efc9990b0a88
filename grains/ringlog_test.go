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

func TestTailKeepsWholeLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short\n", 512, "short"},
		{"first line\nsecond line\nthe last\n", 20, "the last"},
		{"", 10, ""},
	} {
		if got := tail([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
