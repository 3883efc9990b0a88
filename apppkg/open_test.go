package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	ipld "github.com/ipfs/go-ipld-format"
)

// craft builds a package around a hand-made tree, bypassing the packer's
// checks. add puts extra entries into the root directory.
type crafter struct {
	t        *testing.T
	sink     *carSink
	root     *merkledag.ProtoNode
	manifest []byte
}

func newCrafter(t *testing.T, key ed25519.PrivateKey) *crafter {
	sink, err := newCarSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	c := &crafter{t: t, sink: sink, root: ft.EmptyDirNode(), manifest: []byte(manifestFor(key, ""))}
	c.root.SetCidBuilder(cidBuilder)
	for _, mp := range mountPoints {
		d := ft.EmptyDirNode()
		d.SetCidBuilder(cidBuilder)
		c.add(mp, d)
	}
	return c
}

func (c *crafter) node(data []byte) *merkledag.ProtoNode {
	nd := merkledag.NodeWithData(data)
	nd.SetCidBuilder(cidBuilder)
	return nd
}

func (c *crafter) file(content string, mode uint32) ipld.Node {
	fsn := ft.NewFSNode(ft.TFile)
	fsn.SetData([]byte(content))
	fsn.SetModeFromUnixPermissions(mode)
	b, err := fsn.GetBytes()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.node(b)
}

func (c *crafter) add(name string, nd ipld.Node) {
	if err := c.sink.Add(context.Background(), nd); err != nil {
		c.t.Fatal(err)
	}
	if err := c.root.AddRawLink(name, &ipld.Link{Cid: nd.Cid()}); err != nil {
		c.t.Fatal(err)
	}
}

// finish signs with key and returns the package bytes; mutate may change
// the descriptor after signing.
func (c *crafter) finish(key ed25519.PrivateKey, mutate func(*descriptor)) []byte {
	c.add(ManifestFile, c.file(string(c.manifest), 0o444))
	if err := c.sink.Add(context.Background(), c.root); err != nil {
		c.t.Fatal(err)
	}
	sum := sha256.Sum256(c.manifest)
	d := &descriptor{Format: descriptorFormat, App: AppID(key.Public().(ed25519.PublicKey)), Version: 3,
		Root: c.root.Cid().String(), ManifestSHA256: hex.EncodeToString(sum[:])}
	d.Signature = ed25519.Sign(key, d.signedBytes())
	if mutate != nil {
		mutate(d)
	}
	var buf bytes.Buffer
	if _, _, err := c.sink.finishWith(&buf, d); err != nil {
		c.t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpenRefuses(t *testing.T) {
	key, other := testKey(1), testKey(2)
	good, _ := pack(t, writeApp(t, key), key, PackOptions{})
	tamper := func(old, new string) []byte {
		i := bytes.Index(good, []byte(old))
		if i < 0 {
			t.Fatalf("%q not in package", old)
		}
		b := bytes.Clone(good)
		copy(b[i:], new)
		return b
	}
	withMode := func(mode uint32) func(c *crafter) {
		return func(c *crafter) { c.add("evil", c.file("x", mode)) }
	}
	tests := []struct {
		name  string
		pkg   func() []byte
		craft func(c *crafter)
		sign  ed25519.PrivateKey
		mut   func(*descriptor)
		lim   SizeLimits
		want  string
	}{
		{name: "crafted but valid", want: ""},
		{name: "bad signature", mut: func(d *descriptor) { d.Signature[0] ^= 1 }, want: "bad signature"},
		{name: "signature by another key", mut: func(d *descriptor) {
			d.Signature = ed25519.Sign(other, d.signedBytes())
		}, want: "bad signature"},
		{name: "signed by another key as itself", sign: other, want: `manifest field "id"`},
		{name: "version not the signed one", mut: func(d *descriptor) {
			d.Version = 4
			d.Signature = ed25519.Sign(key, d.signedBytes())
		}, want: `"version"`},
		{name: "manifest changed after signing", craft: func(c *crafter) {
			c.manifest = []byte(strings.Replace(string(c.manifest), `"Test"`, `"Evil"`, 1))
		}, mut: func(d *descriptor) {
			sum := sha256.Sum256([]byte(manifestFor(key, "")))
			d.ManifestSHA256 = hex.EncodeToString(sum[:])
			d.Signature = ed25519.Sign(key, d.signedBytes())
		}, want: "does not match the signed manifest hash"},
		{name: "manifest not JSON", craft: func(c *crafter) { c.manifest = []byte(`{"id":`) }, want: "manifest"},
		{name: "manifest misses fields", craft: func(c *crafter) {
			c.manifest = []byte(fmt.Sprintf(`{"id":%q,"version":3}`, AppID(key.Public().(ed25519.PublicKey))))
		}, want: `manifest field "name"`},
		{name: "block tampered", pkg: func() []byte { return tamper("data data", "DATA data") }, want: "do not match its CID"},
		{name: "descriptor tampered", pkg: func() []byte { return tamper(`"version":3`, `"version":4`) }, want: "do not match its CID"},
		{name: "truncated", pkg: func() []byte { return good[:len(good)/2] }, want: "truncated"},
		{name: "truncated in header", pkg: func() []byte { return good[:60] }, want: "CAR"},
		{name: "truncated by one", pkg: func() []byte { return good[:len(good)-len(good)/3] }, want: "truncated"},
		{name: "empty", pkg: func() []byte { return nil }, want: "not a CAR"},
		{name: "dotdot name", craft: func(c *crafter) { c.add("..", c.file("x", 0o444)) }, want: `name ".."`},
		{name: "slash name", craft: func(c *crafter) { c.add("../../etc/passwd", c.file("x", 0o444)) }, want: "must not be empty"},
		{name: "absolute name", craft: func(c *crafter) { c.add("/etc/passwd", c.file("x", 0o444)) }, want: "must not be empty"},
		{name: "empty name", craft: func(c *crafter) { c.add("", c.file("x", 0o444)) }, want: "must not be empty"},
		{name: "duplicate name", craft: func(c *crafter) {
			c.add("twice", c.file("x", 0o444))
			c.add("twice", c.file("y", 0o444))
		}, want: "twice"},
		{name: "symlink outside", craft: func(c *crafter) {
			b, _ := ft.SymlinkData("../etc/passwd")
			c.add("out", c.node(b))
		}, want: "outside the tree"},
		{name: "symlink escaping through another", craft: func(c *crafter) {
			sub := c.node(ft.FolderPBData())
			b, _ := ft.SymlinkData("..")
			up := c.node(b)
			c.sink.Add(context.Background(), up)
			sub.AddRawLink("up", &ipld.Link{Cid: up.Cid()})
			c.add("s", sub)
			b, _ = ft.SymlinkData("s/up/..")
			c.add("x", c.node(b))
		}, want: "resolves outside the tree"},
		{name: "symlink to nothing is fine", craft: func(c *crafter) {
			b, _ := ft.SymlinkData("no/such/../file")
			c.add("dangling", c.node(b))
		}, want: ""},
		{name: "symlink loop", craft: func(c *crafter) {
			b, _ := ft.SymlinkData("b")
			c.add("a", c.node(b))
			b, _ = ft.SymlinkData("a")
			c.add("b", c.node(b))
		}, want: "too many levels"},
		{name: "absolute symlink", craft: func(c *crafter) {
			b, _ := ft.SymlinkData("/etc/passwd")
			c.add("out", c.node(b))
		}, want: "absolute"},
		{name: "setuid", craft: withMode(0o4755), want: "setuid"},
		{name: "setgid", craft: withMode(0o2755), want: "setuid, setgid"},
		{name: "extended mode bits", craft: func(c *crafter) {
			fsn := ft.NewFSNode(ft.TFile)
			fsn.SetData([]byte("x"))
			fsn.SetModeFromUnixPermissions(0o666)
			fsn.SetExtendedMode(0o2) // the bits above the permissions, e.g. a file type
			b, _ := fsn.GetBytes()
			c.add("modes", c.node(b))
		}, want: "file-type bits"},
		{name: "metadata type", craft: func(c *crafter) {
			b, _ := ft.BytesForMetadata(&ft.Metadata{MimeType: "x"})
			c.add("meta", c.node(b))
		}, want: "UnixFS type Metadata"},
		{name: "unknown unixfs type", craft: func(c *crafter) {
			fsn := ft.NewFSNode(pb.Data_DataType(9))
			b, _ := fsn.GetBytes()
			c.add("weird", c.node(b))
		}, want: "UnixFS type"},
		{name: "file lies about its size", craft: func(c *crafter) {
			c.add("liar", c.node(ft.FilePBData([]byte("abc"), 10)))
		}, want: "claims 10 bytes"},
		{name: "missing block", craft: func(c *crafter) {
			missing := c.file("never stored", 0o444)
			c.root.AddRawLink("gone", &ipld.Link{Cid: missing.Cid()})
		}, want: "missing"},
		{name: "extra block", craft: func(c *crafter) {
			c.sink.Add(context.Background(), c.file("stray", 0o444))
		}, want: "not part of the package"},
		{name: "no mount points", craft: func(c *crafter) {
			empty := c.root.Links()[0].Cid
			for _, mp := range mountPoints {
				c.root.RemoveNodeLink(mp)
			}
			c.root.AddRawLink("other", &ipld.Link{Cid: empty})
		}, want: "mount point"},
		{name: "package over limit", lim: SizeLimits{MaxPackage: 1000}, pkg: func() []byte { return good }, want: "over the size limit"},
		{name: "file over limit", lim: SizeLimits{MaxFile: 1000}, pkg: func() []byte { return good }, want: "data.txt is larger than 1000 bytes: over the size limit"},
		{name: "too many entries", lim: SizeLimits{MaxEntries: 5}, pkg: func() []byte { return good }, want: "entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			if tt.pkg != nil {
				b = tt.pkg()
			} else {
				c := newCrafter(t, key)
				if tt.craft != nil {
					tt.craft(c)
				}
				sign := key
				if tt.sign != nil {
					sign = tt.sign
					c.manifest = []byte(manifestFor(key, ""))
				}
				b = c.finish(sign, tt.mut)
			}
			p, err := openBytes(b, tt.lim)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				dest := filepath.Join(t.TempDir(), "pkg")
				if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err != nil {
					t.Fatal(err)
				}
				RemoveTree(dest)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			// A refused package cannot be unpacked, so nothing is written.
			parent := t.TempDir()
			if err := Unpack(context.Background(), p, filepath.Join(parent, "pkg"), UnpackOptions{}); err == nil {
				t.Fatal("unpacked a refused package")
			}
			assertOnly(t, parent)
		})
	}
}
