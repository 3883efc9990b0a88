package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
)

// testKey is fixed so that packages (and fuzz seeds) are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func manifestFor(key ed25519.PrivateKey, extra string) string {
	return fmt.Sprintf(`{"id":%q,"name":"Test","version":3,"displayVersion":"0.3","command":["/bin/app"],"port":8000,
	"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"%s}`, AppID(key.Public().(ed25519.PublicKey)), extra)
}

// writeApp makes a small app tree and returns its directory.
func writeApp(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		ManifestFile:         manifestFor(key, `,"icon":"share/icon.svg","description":"a test app"`),
		"bin/app":            "#!/bin/sh\necho hi\n",
		"share/icon.svg":     "<svg/>",
		"share/data.txt":     strings.Repeat("data ", 100_000), // several chunks
		"share/empty":        "",
		"share/deep/a/b/c.t": "deep",
		"var/.keep":          "",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/app"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../share/data.txt", filepath.Join(dir, "bin/data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func pack(t testing.TB, dir string, key ed25519.PrivateKey, opts PackOptions) ([]byte, *Package) {
	t.Helper()
	var buf bytes.Buffer
	p, err := Pack(context.Background(), dir, key, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), p
}

func openBytes(b []byte, lim SizeLimits) (*Package, error) {
	return Open(context.Background(), bytes.NewReader(b), int64(len(b)), lim)
}

func TestPackOpenUnpack(t *testing.T) {
	key := testKey(1)
	dir := writeApp(t, key)
	var calls int
	b1, p1 := pack(t, dir, key, PackOptions{Progress: func(done, total int64) {
		calls++
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	}})
	if calls == 0 {
		t.Error("no progress reported")
	}
	b2, p2 := pack(t, dir, key, PackOptions{})
	if p1.CID != p2.CID || !bytes.Equal(b1, b2) {
		t.Fatalf("packing twice differs: %s vs %s", p1.CID, p2.CID)
	}
	if p1.CID.Version() != 1 {
		t.Errorf("root %s is not CIDv1", p1.CID)
	}

	// Another tool reads the file as a valid, fully hashed CARv2.
	rd, err := car.NewReader(bytes.NewReader(b1))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := rd.Inspect(true); err != nil || st.Version != 2 {
		t.Fatalf("inspect: %+v %v", st, err)
	}

	p, err := openBytes(b1, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if p.CID != p1.CID || p.AppID != AppID(key.Public().(ed25519.PublicKey)) || p.Version != 3 ||
		p.Size != int64(len(b1)) || p.Manifest.Icon != "share/icon.svg" {
		t.Fatalf("package %+v", p)
	}
	dest := filepath.Join(t.TempDir(), "pkg")
	if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(dest)
	if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err == nil {
		t.Error("unpacked over an existing dir")
	}

	// Every original entry is there with its content, plus the mount points.
	err = filepath.WalkDir(dir, func(src string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, src)
		dst := filepath.Join(dest, rel)
		fi, err := os.Lstat(dst)
		if err != nil {
			return err
		}
		want := fs.FileMode(0o444)
		switch {
		case d.IsDir():
			want = fs.ModeDir | 0o555
		case d.Type()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(src)
			b, _ := os.Readlink(dst)
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
			return nil
		case rel == "bin/app":
			want = 0o555
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), want)
		}
		if d.Type().IsRegular() {
			a, _ := os.ReadFile(src)
			b, _ := os.ReadFile(dst)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range mountPoints {
		if fi, err := os.Stat(filepath.Join(dest, mp)); err != nil || fi.Mode() != fs.ModeDir|0o555 {
			t.Errorf("mount point %s: %v %v", mp, fi, err)
		}
	}
	assertOnly(t, filepath.Dir(dest), "pkg")
}

// assertOnly fails unless dir holds exactly the names given.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestPackRefuses(t *testing.T) {
	key := testKey(1)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		opts  PackOptions
		want  string
	}{
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "FIFO"},
		{"socket", func(t *testing.T, dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, PackOptions{}, "socket"},
		{"device", func(t *testing.T, dir string) {
			if os.Getuid() != 0 {
				t.Skip("mknod needs root")
			}
			if err := syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "character device"},
		{"setuid", func(t *testing.T, dir string) {
			if err := syscall.Chmod(filepath.Join(dir, "bin/app"), 0o4755); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "setuid"},
		{"setgid dir", func(t *testing.T, dir string) {
			if err := syscall.Chmod(filepath.Join(dir, "share"), 0o2755); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "setgid"},
		{"absolute symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "share/pw")); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "absolute"},
		{"escaping symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("../../x", filepath.Join(dir, "share/out")); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "outside the tree"},
		{"symlink escaping through another", func(t *testing.T, dir string) {
			if err := os.Symlink("..", filepath.Join(dir, "share/up")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("share/up/..", filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "resolves outside the tree"},
		{"file too big", nil, PackOptions{Limits: SizeLimits{MaxFile: 1000}}, "share/data.txt is 500000 bytes: over the size limit"},
		{"package too big", nil, PackOptions{Limits: SizeLimits{MaxPackage: 100_000}}, "over the size limit"},
		{"too many entries", nil, PackOptions{Limits: SizeLimits{MaxEntries: 5}}, "entries"},
		{"mount point is a file", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "tmp"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, "tmp must be a directory"},
		{"id of another key", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifestFor(testKey(2), "")), 0o644); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, `"id"`},
		{"missing icon", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "share/icon.svg")); err != nil {
				t.Fatal(err)
			}
		}, PackOptions{}, `"icon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeApp(t, key)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			var buf bytes.Buffer
			_, err := Pack(context.Background(), dir, key, &buf, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// flippingReader lets a test change the package file after Open, the way a
// disk or another process might.
type flippingReader struct{ b []byte }

func (f *flippingReader) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(f.b).ReadAt(p, off)
}

func TestUnpackLeavesNothingOnFailure(t *testing.T) {
	key := testKey(1)
	good, _ := pack(t, writeApp(t, key), key, PackOptions{})
	tests := []struct {
		name   string
		mangle func(r *flippingReader, cancel func())
		want   string
	}{
		{"block changed after open", func(r *flippingReader, _ func()) {
			i := bytes.LastIndex(r.b, []byte("data data"))
			r.b[i] ^= 0x20
		}, "do not match its CID"},
		{"canceled", func(_ *flippingReader, cancel func()) { cancel() }, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &flippingReader{b: bytes.Clone(good)}
			p, err := Open(context.Background(), r, int64(len(good)), SizeLimits{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.mangle(r, cancel)
			parent := t.TempDir()
			err = Unpack(ctx, p, filepath.Join(parent, "pkg"), UnpackOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			assertOnly(t, parent)
		})
	}
}

func TestOpenFileAndProgress(t *testing.T) {
	key := testKey(1)
	dir := writeApp(t, key)
	// A file of a few MB so that progress is reported more than once.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	if err := os.WriteFile(filepath.Join(dir, "share/big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app.erg")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := Pack(context.Background(), dir, key, f, PackOptions{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Packing into an empty file builds the package in place; it must be
	// the same bytes as packing into any other writer.
	inPlace, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if viaBuffer, _ := pack(t, dir, key, PackOptions{}); !bytes.Equal(inPlace, viaBuffer) {
		t.Fatalf("package built in place (%d bytes) differs from one written to a buffer (%d bytes)", len(inPlace), len(viaBuffer))
	}
	if packed.Size != int64(len(inPlace)) {
		t.Fatalf("Pack reported %d bytes, the file has %d", packed.Size, len(inPlace))
	}
	p, err := OpenFile(context.Background(), file, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.CID != packed.CID {
		t.Fatalf("CID %s, packed %s", p.CID, packed.CID)
	}
	var last, calls int64
	dest := filepath.Join(t.TempDir(), "pkg")
	start := time.Now()
	err = Unpack(context.Background(), p, dest, UnpackOptions{Progress: func(done, total int64) {
		calls++
		if done < last || done > total {
			t.Errorf("progress %d after %d of %d", done, last, total)
		}
		last = done
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(dest)
	t.Logf("unpacked %d bytes in %v", last, time.Since(start))
	if calls < 2 {
		t.Errorf("progress called %d times", calls)
	}
	got, err := os.ReadFile(filepath.Join(dest, "share/big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file differs: %v", err)
	}
}

func TestCIDsAreV1RawLeaves(t *testing.T) {
	key := testKey(1)
	b, p := pack(t, writeApp(t, key), key, PackOptions{})
	op, err := openBytes(b, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	for c := range op.store.spans {
		if c.Version() != 1 {
			t.Errorf("block %s is not CIDv1", c)
		}
	}
	// The data file is several chunks: its root links to raw leaves.
	for _, e := range op.entries {
		if e.path == "share/data.txt" {
			if len(e.node.Links()) < 2 {
				t.Fatalf("data.txt has %d links", len(e.node.Links()))
			}
			if e.node.Links()[0].Cid.Prefix().Codec != cid.Raw {
				t.Errorf("leaf %s is not raw", e.node.Links()[0].Cid)
			}
		}
	}
	_ = p
	if !errors.Is(fmt.Errorf("x: %w", ErrTooLarge), ErrTooLarge) {
		t.Fatal("ErrTooLarge does not wrap")
	}
}

// TestShardedDirectory packs a directory big enough for boxo to store it as
// a HAMT, and reads it back.
func TestShardedDirectory(t *testing.T) {
	key := testKey(1)
	dir := writeApp(t, key)
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 1200
	for i := range n {
		name := fmt.Sprintf("%s-%05d", strings.Repeat("long-name-fills-the-directory-block-", 6), i)
		if err := os.WriteFile(filepath.Join(many, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := pack(t, dir, key, PackOptions{})
	p, err := openBytes(b, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	var sharded bool
	for _, e := range p.entries {
		if e.path == "many" {
			tp, _, _ := classify(e.node)
			sharded = tp == pb.Data_HAMTShard
		}
	}
	if !sharded {
		t.Error("many/ was not stored as a HAMT; the test does not cover sharding")
	}
	dest := filepath.Join(t.TempDir(), "pkg")
	if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(dest)
	ents, err := os.ReadDir(filepath.Join(dest, "many"))
	if err != nil || len(ents) != n {
		t.Fatalf("unpacked %d entries (%v), want %d", len(ents), err, n)
	}
	got, _ := os.ReadFile(filepath.Join(dest, "many", ents[7].Name()))
	if string(got) != ents[7].Name() {
		t.Errorf("content %q", got)
	}
}
