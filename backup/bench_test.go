package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// dirBytes is what a directory tree takes.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func fillFiles(t testing.TB, dir string, files, size int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	for i := range files {
		for j := 0; j+8 <= len(b); j += 8 {
			v := r.Uint64()
			for k := range 8 {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		writeFile(t, filepath.Join(dir, fmt.Sprintf("d%02d/f%04d", i%16, i)), b)
	}
}

// BenchmarkBackupVsRestic backs up the same tree (ERG_BENCH_MB, default
// 256 MiB, in 2 MiB files) with erg and with restic, first and after 1% of
// the files changed, and restores it; it prints times and bytes written
// beside each other. The pause is the window a grain is frozen for: the
// copy of the files that changed.
func BenchmarkBackupVsRestic(b *testing.B) {
	mb := 256
	if v := os.Getenv("ERG_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb)
	}
	ctx := context.Background()
	files := mb / 2
	src := b.TempDir()
	fillFiles(b, src, files, 2<<20, 1)
	k, code := testKeys(b)
	_ = code
	repoDir := b.TempDir()
	repo, _ := OpenDir(repoDir)
	cache := filepath.Join(b.TempDir(), "cache.json")
	var pauses []time.Duration
	snapshot := func() (time.Duration, int64) {
		t := &Target{Name: "dir", Dest: repo}
		start := time.Now()
		run := NewRun(ctx, &k.NodeKeys, []*Target{t}, cache, b.TempDir())
		res, err := run.Snapshot(ctx, Source{Kind: "grain", Grain: GrainMeta{ID: "g"}, Roots: map[string]string{"var": src},
			Freeze: func() (func(), error) { return func() {}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		run.SaveCache()
		pauses = append(pauses, res.Pause)
		return time.Since(start), t.Written
	}
	change := func(seed uint64) {
		r := rand.New(rand.NewPCG(seed, 9))
		for i := 0; i < max(1, files/100); i++ {
			n := r.IntN(files)
			p := filepath.Join(src, fmt.Sprintf("d%02d/f%04d", n%16, n))
			bs, _ := os.ReadFile(p)
			copy(bs[r.IntN(len(bs)-4096):], randBytes(4096))
			os.WriteFile(p, bs, 0o600)
		}
	}
	b.ResetTimer()
	ergFirst, ergFirstW := snapshot()
	change(2)
	ergInc, ergIncW := snapshot()
	for i := range 20 { // more pauses for p50/p99
		change(uint64(10 + i))
		snapshot()
	}
	out := b.TempDir()
	start := time.Now()
	r, err := NewRestorer(ctx, k, []Named{{Name: "dir", Dest: repo}})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := r.Latest(ctx, func(h Header) bool { return true }, nil, func() (map[string]string, func(), error) {
		return map[string]string{"var": out}, func() { emptyDir(out) }, nil
	}); err != nil {
		b.Fatal(err)
	}
	ergRestore := time.Since(start)
	b.StopTimer()
	sort.Slice(pauses, func(i, j int) bool { return pauses[i] < pauses[j] })
	b.Logf("data: %d MiB in %d files; 1%% = %d files changed (4 KiB each) per incremental", mb, files, max(1, files/100))
	b.Logf("erg    first %v, %d MiB written; incremental %v, %.2f MiB written; restore %v", ergFirst.Round(time.Millisecond), ergFirstW>>20, ergInc.Round(time.Millisecond), float64(ergIncW)/(1<<20), ergRestore.Round(time.Millisecond))
	b.Logf("erg    pause (copy of changed files while frozen) over %d snapshots: p50 %v, p99 %v (first, all files: %v)", len(pauses)-1, pauses[len(pauses)/2], pauses[len(pauses)*99/100], pauses[len(pauses)-1])

	restic, err := exec.LookPath("restic")
	if err != nil {
		b.Log("restic not installed: no baseline (apt-get install restic)")
		return
	}
	// restic on the same data from the start: regenerate the tree.
	os.RemoveAll(src)
	fillFiles(b, src, files, 2<<20, 1)
	rrepo := b.TempDir()
	env := append(os.Environ(), "RESTIC_REPOSITORY="+rrepo, "RESTIC_PASSWORD=bench")
	runRestic := func(args ...string) time.Duration {
		cmd := exec.Command(restic, args...)
		cmd.Env = env
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("restic %v: %v\n%s", args, err, out)
		}
		return time.Since(start)
	}
	runRestic("init")
	before := dirBytes(rrepo)
	rFirst := runRestic("backup", "-q", src)
	rFirstW := dirBytes(rrepo) - before
	change(2)
	before = dirBytes(rrepo)
	rInc := runRestic("backup", "-q", src)
	rIncW := dirBytes(rrepo) - before
	rout := b.TempDir()
	rRestore := runRestic("restore", "latest", "--target", rout)
	b.Logf("restic first %v, %d MiB written; incremental %v, %.2f MiB written; restore %v", rFirst.Round(time.Millisecond), rFirstW>>20, rInc.Round(time.Millisecond), float64(rIncW)/(1<<20), rRestore.Round(time.Millisecond))
	b.Logf("ratio erg/restic: first %.2fx, incremental %.2fx, restore %.2fx", ergFirst.Seconds()/rFirst.Seconds(), ergInc.Seconds()/rInc.Seconds(), ergRestore.Seconds()/rRestore.Seconds())
}
