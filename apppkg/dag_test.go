package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
)

func memBlockstore() blockstore.Blockstore {
	return blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
}

// dagOf puts every block of a package file into a fresh blockstore, as a
// fetch would, without checking them, and returns the descriptor's CID.
func dagOf(t *testing.T, pkgFile []byte) (blockstore.Blockstore, cid.Cid) {
	t.Helper()
	cs, desc, err := indexCAR(context.Background(), bytes.NewReader(pkgFile), int64(len(pkgFile)), defaultSizeLimits, nil)
	if err != nil {
		t.Fatal(err)
	}
	bs := memBlockstore()
	for c := range cs.spans {
		data, err := cs.read(c)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := blocks.NewBlockWithCid(data, c)
		if err := bs.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return bs, desc
}

func TestOpenDAGUnpacksWhatOpenDoes(t *testing.T) {
	ctx := context.Background()
	key := testKey(1)
	file, _ := pack(t, writeApp(t, key), key, PackOptions{})
	want, err := openBytes(file, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	bs, desc := dagOf(t, file)
	p, err := OpenDAG(ctx, bs, desc, SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	var blockBytes int64
	for c := range want.store.spans {
		blockBytes += want.store.spans[c].size
	}
	if p.CID != want.CID || p.AppID != want.AppID || p.Version != want.Version || p.Manifest.Name != want.Manifest.Name ||
		p.Size != blockBytes || !bytes.Equal(p.ManifestRaw, want.ManifestRaw) {
		t.Fatalf("OpenDAG = %+v, want %+v with size %d", p, want, blockBytes)
	}
	if d, err := DescriptorCID(p); err != nil || d != desc {
		t.Errorf("DescriptorCID = %s, %v; want %s", d, err, desc)
	}
	if c, ok := p.FileCID("share/icon.svg"); !ok || !c.Defined() {
		t.Error("no icon CID")
	}
	fromFile, fromDAG := filepath.Join(t.TempDir(), "file"), filepath.Join(t.TempDir(), "dag")
	if err := Unpack(ctx, want, fromFile, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(fromFile)
	if err := Unpack(ctx, p, fromDAG, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(fromDAG)
	n := 0
	err = filepath.WalkDir(fromFile, func(src string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		rel, _ := filepath.Rel(fromFile, src)
		a, _ := os.Lstat(src)
		b, err := os.Lstat(filepath.Join(fromDAG, rel))
		if err != nil || a.Mode() != b.Mode() || a.Size() != b.Size() {
			t.Errorf("%s: %v vs %v (%v)", rel, a, b, err)
		}
		if d.Type().IsRegular() {
			x, _ := os.ReadFile(src)
			y, _ := os.ReadFile(filepath.Join(fromDAG, rel))
			if !bytes.Equal(x, y) {
				t.Errorf("%s differs", rel)
			}
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d entries: %v", n, err)
	}
}

func TestOpenDAGRefuses(t *testing.T) {
	ctx := context.Background()
	key, other := testKey(1), testKey(2)
	good, _ := pack(t, writeApp(t, key), key, PackOptions{})
	tests := []struct {
		name  string
		craft func(c *crafter)
		mut   func(*descriptor)
		bs    func(bs blockstore.Blockstore, desc cid.Cid) cid.Cid
		lim   SizeLimits
		want  string
	}{
		{name: "crafted but valid", want: ""},
		{name: "bad signature", mut: func(d *descriptor) { d.Signature[0] ^= 1 }, want: "bad signature"},
		{name: "signature by another key", mut: func(d *descriptor) {
			d.Signature = ed25519.Sign(other, d.signedBytes())
		}, want: "bad signature"},
		{name: "dotdot name", craft: func(c *crafter) { c.add("..", c.file("x", 0o444)) }, want: `name ".."`},
		{name: "setuid", craft: func(c *crafter) { c.add("evil", c.file("x", 0o4755)) }, want: "setuid"},
		{name: "symlink outside", craft: func(c *crafter) {
			b, _ := ft.SymlinkData("../etc/passwd")
			c.add("out", c.node(b))
		}, want: "outside the tree"},
		{name: "file lies about its size", craft: func(c *crafter) {
			c.add("liar", c.node(ft.FilePBData([]byte("abc"), 10)))
		}, want: "claims 10 bytes"},
		{name: "missing block", craft: func(c *crafter) {
			c.root.AddRawLink("gone", &ipld.Link{Cid: c.file("never stored", 0o444).Cid()})
		}, want: "missing"},
		{name: "no descriptor", bs: func(bs blockstore.Blockstore, desc cid.Cid) cid.Cid {
			bs.DeleteBlock(ctx, desc)
			return desc
		}, want: "missing"},
		{name: "not a descriptor", bs: func(bs blockstore.Blockstore, desc cid.Cid) cid.Cid {
			d, _ := cid.Decode(mustParseDescriptor(t, bs, desc).Root)
			return d
		}, want: "not a package descriptor"},
		{name: "block changed in the store", bs: func(bs blockstore.Blockstore, desc cid.Cid) cid.Cid {
			root, _ := cid.Decode(mustParseDescriptor(t, bs, desc).Root)
			b, _ := bs.Get(ctx, root)
			data := bytes.Clone(b.RawData())
			data[len(data)-1] ^= 1
			bad, _ := blocks.NewBlockWithCid(data, root)
			bs.DeleteBlock(ctx, root)
			bs.Put(ctx, bad)
			return desc
		}, want: "do not match its CID"},
		{name: "package over limit", lim: SizeLimits{MaxPackage: 1000}, want: "over the size limit"},
		{name: "too many entries", lim: SizeLimits{MaxEntries: 3}, want: "entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var file []byte
			if tt.craft == nil && tt.mut == nil && tt.want != "" {
				file = good
			} else {
				c := newCrafter(t, key)
				if tt.craft != nil {
					tt.craft(c)
				}
				file = c.finish(key, tt.mut)
			}
			bs, desc := dagOf(t, file)
			if tt.bs != nil {
				desc = tt.bs(bs, desc)
			}
			p, err := OpenDAG(ctx, bs, desc, tt.lim)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			parent := t.TempDir()
			if err := Unpack(ctx, p, filepath.Join(parent, "pkg"), UnpackOptions{}); err == nil {
				t.Fatal("unpacked a refused package")
			}
			assertOnly(t, parent)
		})
	}
}

func mustParseDescriptor(t *testing.T, bs blockstore.Blockstore, desc cid.Cid) *descriptor {
	b, err := bs.Get(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDescriptor(b.RawData())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
