package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// BenchmarkColdStart: from no process to the probe's first HTTP 200.
func BenchmarkColdStart(b *testing.B) {
	r := newRunner(b, sandbox.Config{})
	// erg-nozygote: every start creates its sandbox from scratch.
	cold := newRunner(b, sandbox.Config{Zygotes: -1})
	app := sandbox.BenchApp{Root: sandboxtest.BuildProbeTree(b), Args: sandboxtest.ProbeArgs}
	p50 := map[string]time.Duration{}
	// erg-img: /var on a disk image the host keeps mounted, as the node
	// does for a grain once it has started.
	imgVar := ""
	if sandbox.DiskImages() == nil {
		dir := b.TempDir()
		imgVar = filepath.Join(dir, "var")
		if err := os.Mkdir(imgVar, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := sandbox.MountImage(filepath.Join(dir, "var.img"), imgVar, 64<<20); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sandbox.UnmountImage(imgVar) })
	}
	for _, mode := range []string{"plain", "bwrap", "erg", "erg-nozygote", "erg-img"} {
		b.Run(mode, func(b *testing.B) {
			if _, err := exec.LookPath("bwrap"); mode == "bwrap" && err != nil {
				b.Skip("bwrap not installed (apt-get install bubblewrap)")
			}
			if mode == "erg-img" && imgVar == "" {
				b.Skip("no disk images here:", sandbox.DiskImages())
			}
			var samples []time.Duration
			for b.Loop() {
				var d time.Duration
				var err error
				switch mode {
				case "erg-img":
					d, err = sandbox.ColdStartOn(context.Background(), r, app, imgVar)
				case "erg-nozygote":
					d, err = sandbox.ColdStartOnce(context.Background(), cold, app, "erg")
				default:
					d, err = sandbox.ColdStartOnce(context.Background(), r, app, mode)
				}
				if err != nil {
					b.Fatal(err)
				}
				samples = append(samples, d)
			}
			st := sandbox.Stats(mode, samples)
			p50[mode] = st.P50
			b.ReportMetric(float64(st.P50)/1e6, "p50-ms")
			b.ReportMetric(float64(st.P95)/1e6, "p95-ms")
			if strings.HasPrefix(mode, "erg") && p50["bwrap"] > 0 {
				b.ReportMetric(float64(st.P50)/float64(p50["bwrap"]), "p50-"+mode+"/bwrap")
			}
		})
	}
	// A grain's first start after the node's: its image is attached and
	// mounted first (later starts find it mounted: erg-img above).
	b.Run("img-mount", func(b *testing.B) {
		if err := sandbox.DiskImages(); err != nil {
			b.Skip(err)
		}
		dir := b.TempDir()
		img, v := filepath.Join(dir, "var.img"), filepath.Join(dir, "var")
		if err := os.Mkdir(v, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := sandbox.MountImage(img, v, 64<<20); err != nil {
			b.Fatal(err)
		}
		var samples []time.Duration
		for b.Loop() {
			b.StopTimer()
			if err := sandbox.UnmountImage(v); err != nil {
				b.Fatal(err)
			}
			if loops := sandbox.AwaitLoopsFreed(dir, sandbox.ImageLoops(dir), 2*time.Second); len(loops) > 0 {
				b.Fatalf("loop devices of %s not freed: %v", img, loops)
			}
			b.StartTimer()
			t0 := time.Now()
			if err := sandbox.MountImage(img, v, 64<<20); err != nil {
				b.Fatal(err)
			}
			samples = append(samples, time.Since(t0))
		}
		sandbox.UnmountImage(v)
		st := sandbox.Stats("img-mount", samples)
		b.ReportMetric(float64(st.P50)/1e6, "p50-ms")
		if p50["bwrap"] > 0 {
			b.ReportMetric(float64(st.P50+p50["erg"])/float64(p50["bwrap"]), "p50-(mount+erg)/bwrap")
		}
	})
}

// TestColdStart measures cold starts with the zygote pool (the node's
// default) and without it, so that `make test-cgroup2` prints both on a
// v2 kernel; TestUnprivileged does the same as an unprivileged user.
func TestColdStart(t *testing.T) {
	t.Run("zygote", func(t *testing.T) { testColdStart(t, newRunner(t, sandbox.Config{}), 20) })
	t.Run("without-zygotes", func(t *testing.T) { testColdStart(t, newRunner(t, sandbox.Config{Zygotes: -1}), 10) })
}

func testColdStart(t *testing.T, r *sandbox.Runner, n int) {
	app := sandbox.BenchApp{Root: sandboxtest.BuildProbeTree(t), Args: sandboxtest.ProbeArgs}
	rep, err := sandbox.ColdStart(context.Background(), r, app, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold start, %s mode (%s):\n%s", r.Mode(), t.Name(), rep)
	want := 2
	if _, err := exec.LookPath("bwrap"); err == nil {
		want = 3
	}
	if len(rep.Modes) != want {
		t.Fatalf("%d modes measured, want %d", len(rep.Modes), want)
	}
	for _, m := range rep.Modes {
		if m.N != n || m.P50 <= 0 || m.P95 < m.P50 {
			t.Errorf("bad stats %+v", m)
		}
	}
	if s := fmt.Sprint(rep); len(s) == 0 {
		t.Error("empty report")
	}
}
