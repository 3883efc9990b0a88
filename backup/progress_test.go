package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// checkProgress checks a run's or a restore's reports: bytes and files
// never go back, never pass the total, and the last says all is done.
func checkProgress(t *testing.T, what string, ps []Progress, files int, bytes int64) {
	t.Helper()
	if len(ps) < 3 {
		t.Fatalf("%s: %d progress reports: %+v", what, len(ps), ps)
	}
	for i, p := range ps {
		if p.Files != files || p.Bytes != bytes || p.BytesDone > p.Bytes || p.FilesDone > p.Files ||
			i > 0 && (p.BytesDone < ps[i-1].BytesDone || p.FilesDone < ps[i-1].FilesDone) {
			t.Fatalf("%s: report %d of %d is %+v (want %d files, %d bytes)", what, i, len(ps), p, files, bytes)
		}
	}
	if last := ps[len(ps)-1]; last.FilesDone != files || last.BytesDone != bytes {
		t.Fatalf("%s: the last report is %+v", what, last)
	}
	if first := ps[0]; first.FilesDone != 0 || first.BytesDone != 0 {
		t.Fatalf("%s: the first report is %+v", what, first)
	}
}

// A run reports its progress through the files that changed as they are
// sent, and a restore through the files it writes, each ending at the
// total; chunks read ahead in parallel come back in order.
func TestRunAndRestoreReportProgress(t *testing.T) {
	ctx := context.Background()
	k, _ := testKeys(t)
	src := t.TempDir()
	var total int64
	want := map[string][]byte{}
	for _, name := range []string{"a", "b", "c/d"} {
		b := randBytes(3 << 20)
		writeFile(t, filepath.Join(src, name), b)
		want[name] = b
		total += int64(len(b))
	}
	writeFile(t, filepath.Join(src, "empty"), nil)
	repo, _ := OpenDir(t.TempDir())
	cache := filepath.Join(t.TempDir(), "cache.json")
	var ps []Progress
	run := NewRun(ctx, &k.NodeKeys, []*Target{{Name: "dir", Dest: repo}}, cache, t.TempDir())
	run.Progress = func(p Progress) { ps = append(ps, p) }
	if _, err := run.Snapshot(ctx, Source{Kind: "grain", Grain: GrainMeta{ID: "g"}, Roots: map[string]string{"var": src}}); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, "the first run", ps, 4, total)
	run.SaveCache()

	// One file changes: the next run's total is that file alone.
	b := randBytes(1 << 20)
	writeFile(t, filepath.Join(src, "b"), b)
	want["b"] = b
	total += int64(len(b)) - 3<<20
	ps = nil
	run = NewRun(ctx, &k.NodeKeys, []*Target{{Name: "dir", Dest: repo}}, cache, t.TempDir())
	run.Progress = func(p Progress) { ps = append(ps, p) }
	if _, err := run.Snapshot(ctx, Source{Kind: "grain", Grain: GrainMeta{ID: "g"}, Roots: map[string]string{"var": src}}); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, "the incremental run", ps, 1, 1<<20)

	r, err := NewRestorer(ctx, k, []Named{{Name: "dir", Dest: repo}})
	if err != nil {
		t.Fatal(err)
	}
	ps = nil
	r.Progress = func(p Progress) { ps = append(ps, p) }
	out := t.TempDir()
	if _, _, err := r.Latest(ctx, func(h Header) bool { return true }, nil, func() (map[string]string, func(), error) {
		return map[string]string{"var": out}, func() { emptyDir(out) }, nil
	}); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, "the restore", ps, 4, total)
	for name, b := range want {
		if got, _ := os.ReadFile(filepath.Join(out, name)); !bytes.Equal(got, b) {
			t.Fatalf("restored %s differs", name)
		}
	}
}
