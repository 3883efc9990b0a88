package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKeys(t testing.TB) (*Keys, string) {
	t.Helper()
	code := NewCode()
	k, err := DeriveKeys(code)
	if err != nil {
		t.Fatal(err)
	}
	return k, code
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func snap(t *testing.T, k *NodeKeys, src string, cache string, ds ...Destination) (Result, []*Target) {
	t.Helper()
	var ts []*Target
	for i, d := range ds {
		ts = append(ts, &Target{Name: "d" + string(rune('0'+i)), Dest: d})
	}
	run := NewRun(context.Background(), k, ts, cache, t.TempDir())
	res, err := run.Snapshot(context.Background(), Source{Kind: "grain", Grain: GrainMeta{ID: "g1", Title: "secret title"}, Roots: map[string]string{"var": src}})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.SaveCache(); err != nil {
		t.Fatal(err)
	}
	return res, ts
}

func restoreLatest(t *testing.T, k *Keys, ds ...Destination) (string, *Restorer, error) {
	var named []Named
	for i, d := range ds {
		named = append(named, Named{Name: "d" + string(rune('0'+i)), Dest: d})
	}
	r, err := NewRestorer(context.Background(), k, named)
	if err != nil {
		return "", nil, err
	}
	base, out := t.TempDir(), ""
	n := 0
	_, _, err = r.Latest(context.Background(), func(h Header) bool { return h.Grain == "g1" }, nil, func() (map[string]string, func(), error) {
		n++
		out = filepath.Join(base, string(rune('a'+n)))
		os.Mkdir(out, 0o700)
		return map[string]string{"var": out}, func() { os.RemoveAll(out) }, nil
	})
	return out, r, err
}

func TestRoundTripIsIncrementalAndCiphertext(t *testing.T) {
	k, _ := testKeys(t)
	src := t.TempDir()
	big := randBytes(8 << 20)
	writeFile(t, filepath.Join(src, "big"), big)
	for i := range 100 {
		writeFile(t, filepath.Join(src, "many", string(rune('a'+i/26))+string(rune('a'+i%26))), randBytes(100<<10))
	}
	writeFile(t, filepath.Join(src, "sub/note.txt"), []byte("PLANTED-SECRET-STRING"))
	repo, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache.json")
	_, ts := snap(t, &k.NodeKeys, src, cache, repo)
	first := ts[0].Written
	if first < 8<<20 {
		t.Fatalf("first run wrote %d bytes", first)
	}
	// Change 1% of the files: about 1% more goes.
	writeFile(t, filepath.Join(src, "many", "aa"), randBytes(100<<10))
	_, ts = snap(t, &k.NodeKeys, src, cache, repo)
	if second := ts[0].Written; second > first/50 {
		t.Fatalf("incremental run wrote %d bytes of a first %d", second, first)
	}
	// Nothing in the repository holds the plaintext or the title.
	filepath.Walk(repo.Root(), func(p string, fi os.FileInfo, err error) error {
		if fi != nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			for _, s := range []string{"PLANTED-SECRET-STRING", "secret title", "note.txt"} {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s holds %q in the clear", p, s)
				}
			}
		}
		return nil
	})
	out, _, err := restoreLatest(t, k, repo)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "big"))
	if !bytes.Equal(got, big) {
		t.Fatal("restored file differs")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "sub/note.txt")); string(b) != "PLANTED-SECRET-STRING" {
		t.Fatalf("note: %q", b)
	}
}

func TestWrongCodeIsToldAsSuch(t *testing.T) {
	k, _ := testKeys(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("x"))
	repo, _ := OpenDir(t.TempDir())
	snap(t, &k.NodeKeys, src, "", repo)
	other, _ := testKeys(t)
	if _, _, err := restoreLatest(t, other, repo); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("restore with another code: %v", err)
	}
	if _, err := DeriveKeys("not-a-code"); !errors.Is(err, ErrBadCode) {
		t.Fatalf("bad code: %v", err)
	}
	// The code reads back whatever its spelling.
	_, code := testKeys(t)
	a, _ := DeriveKeys(code)
	b, _ := DeriveKeys(strings.ToLower(strings.ReplaceAll(code, "-", " ")))
	if a.Fingerprint != b.Fingerprint {
		t.Fatal("same code, other keys")
	}
}

// A chunk tampered with at one destination is named and read from another;
// damaged everywhere, the restore falls back to an older snapshot.
func TestTamperedChunksAreNamedAndWorkedAround(t *testing.T) {
	k, _ := testKeys(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("version one"))
	d1, _ := OpenDir(t.TempDir())
	d2, _ := OpenDir(t.TempDir())
	snap(t, &k.NodeKeys, src, "", d1, d2)
	writeFile(t, filepath.Join(src, "f"), []byte("version two, longer"))
	snap(t, &k.NodeKeys, src, "", d1, d2)
	id := k.ChunkID([]byte("version two, longer"))
	p := filepath.Join(d1.Root(), KindChunks, id[:2], id)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o600)
	out, r, err := restoreLatest(t, k, d1, d2)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f")); string(got) != "version two, longer" {
		t.Fatalf("restored %q", got)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), "d0: chunk "+id) {
		t.Fatalf("problems do not name the chunk: %q", r.Problems)
	}
	// Truncate it on the second too: the older version comes back.
	p2 := filepath.Join(d2.Root(), KindChunks, id[:2], id)
	os.WriteFile(p2, b[:10], 0o600)
	out, r, err = restoreLatest(t, k, d1, d2)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f")); string(got) != "version one" {
		t.Fatalf("restored %q", got)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), "d1: chunk "+id) {
		t.Fatalf("problems do not name the chunk: %q", r.Problems)
	}
}

// failing is a destination that fails every Put after the first n, like
// a node killed mid-backup.
type failing struct {
	Destination
	n int
}

func (f *failing) Put(ctx context.Context, kind, name string, b []byte) error {
	if f.n == 0 {
		return errors.New("killed")
	}
	f.n--
	return f.Destination.Put(ctx, kind, name, b)
}

func TestCutShortRunLeavesNoSnapshot(t *testing.T) {
	k, _ := testKeys(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), randBytes(4<<20))
	d, _ := OpenDir(t.TempDir())
	// A half-written object in tmp/ from a crash is cleared on open, once
	// old; one being written now (another open while a run writes) stays.
	old, fresh := filepath.Join(d.Root(), "tmp", "put-123"), filepath.Join(d.Root(), "tmp", "put-456")
	writeFile(t, old, []byte("half"))
	writeFile(t, fresh, []byte("in flight"))
	long := time.Now().Add(-2 * staleTemp)
	os.Chtimes(old, long, long)
	d, _ = OpenDir(d.Root())
	if _, err := os.Stat(old); err == nil {
		t.Fatal("an old half-written object was not cleared")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("an object in flight was removed: %v", err)
	}
	cut := &failing{Destination: d, n: 3}
	run := NewRun(context.Background(), &k.NodeKeys, []*Target{{Name: "d", Dest: cut}}, "", t.TempDir())
	if _, err := run.Snapshot(context.Background(), Source{Kind: "grain", Grain: GrainMeta{ID: "g1"}, Roots: map[string]string{"var": src}}); err == nil {
		t.Fatal("a run whose destination died succeeded")
	}
	if objs, _ := d.List(context.Background(), KindSnapshots); len(objs) != 0 {
		t.Fatalf("a cut-short run left snapshot %v", objs)
	}
	snap(t, &k.NodeKeys, src, "", d)
	if _, _, err := restoreLatest(t, k, d); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsPolicyAndNeededChunks(t *testing.T) {
	k, _ := testKeys(t)
	src := t.TempDir()
	d, _ := OpenDir(t.TempDir())
	for i := range 3 {
		writeFile(t, filepath.Join(src, "f"), []byte{byte(i)})
		snap(t, &k.NodeKeys, src, "", d)
	}
	p, err := Prune(context.Background(), d, &k.NodeKeys, Policy{Daily: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Snapshots != 2 || p.Chunks != 2 {
		t.Fatalf("pruned %+v, want 2 snapshots and 2 chunks", p)
	}
	out, _, err := restoreLatest(t, k, d)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f")); !bytes.Equal(b, []byte{2}) {
		t.Fatalf("restored %v", b)
	}
}
