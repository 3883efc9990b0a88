package sandbox

import (
	"strings"
	"testing"
)

// A dying init's stderr reaches the error as one line, its last bytes
// kept when it wrote more.
func TestInitStderrTail(t *testing.T) {
	var tl tail
	if got := tl.said(); got != "" {
		t.Fatalf("nothing written: %q", got)
	}
	tl.Write([]byte("fatal error: newosproc\n\ngoroutine 1:\n"))
	if got := tl.said(); got != ": fatal error: newosproc goroutine 1:" {
		t.Fatalf("said %q", got)
	}
	tl.Write([]byte(strings.Repeat("x", 3*tailMax) + " end"))
	if got := tl.said(); len(got) > tailMax+2 || !strings.HasSuffix(got, "x end") || strings.Contains(got, "fatal") {
		t.Fatalf("the tail of a long write: %d bytes, %.40q", len(got), got)
	}
}
