package sandbox_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// BenchmarkColdStart: from no process to the probe's first HTTP 200.
func BenchmarkColdStart(b *testing.B) {
	r := newRunner(b, sandbox.Config{})
	app := sandbox.BenchApp{Root: sandboxtest.BuildProbeTree(b), Args: sandboxtest.ProbeArgs}
	p50 := map[string]time.Duration{}
	for _, mode := range []string{"plain", "bwrap", "erg"} {
		b.Run(mode, func(b *testing.B) {
			if _, err := exec.LookPath("bwrap"); mode == "bwrap" && err != nil {
				b.Skip("bwrap not installed (apt-get install bubblewrap)")
			}
			var samples []time.Duration
			for b.Loop() {
				d, err := sandbox.ColdStartOnce(context.Background(), r, app, mode)
				if err != nil {
					b.Fatal(err)
				}
				samples = append(samples, d)
			}
			st := sandbox.Stats(mode, samples)
			p50[mode] = st.P50
			b.ReportMetric(float64(st.P50)/1e6, "p50-ms")
			b.ReportMetric(float64(st.P95)/1e6, "p95-ms")
			if mode == "erg" && p50["bwrap"] > 0 {
				b.ReportMetric(float64(st.P50)/float64(p50["bwrap"]), "p50-erg/bwrap")
			}
		})
	}
}

func TestColdStart(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	testColdStart(t, r)
}

func testColdStart(t *testing.T, r *sandbox.Runner) {
	app := sandbox.BenchApp{Root: sandboxtest.BuildProbeTree(t), Args: sandboxtest.ProbeArgs}
	rep, err := sandbox.ColdStart(context.Background(), r, app, 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold start, %s mode:\n%s", r.Mode(), rep)
	want := 2
	if _, err := exec.LookPath("bwrap"); err == nil {
		want = 3
	}
	if len(rep.Modes) != want {
		t.Fatalf("%d modes measured, want %d", len(rep.Modes), want)
	}
	for _, m := range rep.Modes {
		if m.N != 20 || m.P50 <= 0 || m.P95 < m.P50 {
			t.Errorf("bad stats %+v", m)
		}
	}
	if s := fmt.Sprint(rep); len(s) == 0 {
		t.Error("empty report")
	}
}
