package sandbox_test

import (
	"context"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// A frozen sandbox answers nothing until it is thawed, and then carries on.
func TestFreezeStopsTheSandboxUntilThawed(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	if r.Cgroups() == "none" {
		t.Skip("no cgroups here")
	}
	sb := start(t, r, probeSpec(t, "freeze", sandboxtest.BuildProbeTree(t)))
	waitReady(t, sb)
	thaw, err := sb.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	status, _, err := get(ctx, sb, "/")
	cancel()
	if err == nil {
		thaw()
		t.Fatalf("a frozen sandbox answered %d", status)
	}
	thaw()
	mustGet(t, sb, "/")
}
