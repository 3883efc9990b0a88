package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	record "github.com/libp2p/go-libp2p-record"
	_ "modernc.org/sqlite"

	"erg"
	"erg/apppkg"
	"erg/appstore"
	"erg/p2p"
	"erg/p2p/p2ptest"
)

// countingStore counts the block bytes written through it.
type countingStore struct {
	blockstore.Blockstore
	bytes, blocks atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, b blocks.Block) error {
	return c.PutMany(ctx, []blocks.Block{b})
}

func (c *countingStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		c.bytes.Add(int64(len(b.RawData())))
		c.blocks.Add(1)
	}
	return c.Blockstore.PutMany(ctx, bs)
}

// writeApp makes an app tree of about size random bytes.
func writeApp(t *testing.T, key ed25519.PrivateKey, version int, size int) string {
	dir := t.TempDir()
	manifest := fmt.Sprintf(`{"id":%q,"name":"Counted","version":%d,"displayVersion":"0.%d","command":["/bin/app"],"port":8000,
	"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`, apppkg.AppID(key.Public().(ed25519.PublicKey)), version, version)
	data := make([]byte, size)
	rand.Read(data)
	files := map[string][]byte{
		apppkg.ManifestFile: []byte(manifest),
		"bin/app":           []byte("#!/bin/sh\necho hi\n"),
		"share/a.bin":       data[:size/2],
		"share/b.bin":       data[size/2:],
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newInstaller(t *testing.T) (*Installer, string) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE apps (id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
		display_version TEXT NOT NULL, manifest TEXT NOT NULL, tree TEXT NOT NULL, installed_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	pkgs := filepath.Join(dir, "packages")
	if err := os.Mkdir(pkgs, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { apppkg.RemoveTree(pkgs) })
	return New(Config{DB: db, Dir: pkgs}), pkgs
}

// treeBytes is the bytes of the files under dir.
func treeBytes(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStoreInstallWritesThePackageTwice installs a package from the
// store between two real hosts and counts what the install writes: the
// fetched blocks once into the blockstore, and the unpacked tree once.
// No package file is assembled from the DAG and verified again.
func TestStoreInstallWritesThePackageTwice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	counted := &countingStore{}
	hosts := p2ptest.NewTestNet(t, 2, func(i int, c *p2p.Config) {
		c.Validators = record.NamespacedValidator{appstore.ListingNamespace: appstore.ListingValidator{}}
		if i == 1 {
			c.WrapBlockstore = func(bs blockstore.Blockstore) blockstore.Blockstore {
				counted.Blockstore = bs
				return counted
			}
		}
	})
	pub, inst := appstore.NewStore(hosts[0], nil), appstore.NewStore(hosts[1], nil)

	key, err := apppkg.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if _, err := apppkg.Pack(ctx, writeApp(t, key, 1, 6<<20), key, &file, apppkg.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	pkg, err := apppkg.Open(ctx, bytes.NewReader(file.Bytes()), int64(file.Len()), apppkg.SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := apppkg.ImportPackage(ctx, pkg, hosts[0].Blockstore())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := appstore.SignListing(appstore.ListingFor(pkg, desc, hosts[0].ID().String(), []string{"counted"}, ""), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, rec); err != nil {
		t.Fatal(err)
	}
	l, err := inst.Lookup(ctx, pkg.AppID)
	if err != nil {
		t.Fatal(err)
	}

	// A package the installer refuses after the fetch (here: over its
	// size limit) leaves neither blocks nor a tree.
	small, smallDir := newInstaller(t)
	small.cfg.Limits = apppkg.SizeLimits{MaxPackage: 1 << 20}
	f, err := inst.FetchDAG(ctx, l, appstore.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Install(ctx, DAG(hosts[1].Blockstore(), f.Descriptor), Options{}); erg.KindOf(err) != erg.KindOf(erg.ErrInvalid) ||
		!strings.Contains(err.Error(), "over the size limit") {
		t.Fatalf("install over the limit: %v", err)
	}
	if err := f.Discard(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{f.Descriptor, pkg.CID} {
		if has, _ := hosts[1].Blockstore().Has(ctx, c); has {
			t.Errorf("block %s is still in the blockstore after the refusal", c)
		}
	}
	if es, _ := os.ReadDir(smallDir); len(es) != 0 {
		t.Errorf("packages/ holds %d entries after the refusal", len(es))
	}

	in, _ := newInstaller(t)
	before := counted.bytes.Load()
	blocksBefore := counted.blocks.Load()
	f, err = inst.FetchDAG(ctx, l, appstore.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	res, err := in.Install(ctx, DAG(hosts[1].Blockstore(), f.Descriptor), Options{Progress: func(s erg.InstallStep) {
		if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
			phases = append(phases, s.Phase)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Installed || res.Manifest.ID != pkg.AppID || filepath.Base(res.Tree) != pkg.CID.String() {
		t.Fatalf("installed %+v", res)
	}
	blockBytes := counted.bytes.Load() - before
	unpacked := treeBytes(t, res.Tree)
	size := int64(file.Len())
	t.Logf("package file %d bytes; written: %d bytes in %d blocks to the blockstore, %d bytes unpacked; %.2f× the package",
		size, blockBytes, counted.blocks.Load()-blocksBefore, unpacked, float64(blockBytes+unpacked)/float64(size))
	if blockBytes > size || unpacked > size {
		t.Errorf("wrote %d bytes of blocks and %d unpacked for a %d-byte package", blockBytes, unpacked, size)
	}
	if blockBytes+unpacked > 2*size {
		t.Errorf("wrote %d bytes in all, over twice the %d-byte package", blockBytes+unpacked, size)
	}
	if blockBytes < size*9/10 {
		t.Errorf("only %d bytes of blocks written for a %d-byte package: the count misses the fetch", blockBytes, size)
	}
	if want := []string{erg.PhaseVerifying, erg.PhaseUnpacking}; fmt.Sprint(phases) != fmt.Sprint(want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
}

func TestInstallFileAndTree(t *testing.T) {
	ctx := context.Background()
	in, pkgs := newInstaller(t)
	key, _ := apppkg.GenerateKey()
	packFile := func(version int) string {
		var buf bytes.Buffer
		if _, err := apppkg.Pack(ctx, writeApp(t, key, version, 64<<10), key, &buf, apppkg.PackOptions{}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "app.erg")
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	entries := func() int {
		es, _ := os.ReadDir(pkgs)
		return len(es)
	}
	v1, v2 := packFile(1), packFile(2)
	var phases []string
	res, err := in.Install(ctx, File(v1), Options{Progress: func(s erg.InstallStep) {
		if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
			phases = append(phases, s.Phase)
		}
	}})
	if err != nil || !res.Installed || res.Manifest.Version != 1 {
		t.Fatalf("install v1 = %+v, %v", res, err)
	}
	if fmt.Sprint(phases) != fmt.Sprint([]string{erg.PhaseVerifying, erg.PhaseUnpacking}) {
		t.Errorf("phases %v", phases)
	}
	if _, err := in.Install(ctx, File(v1), Options{}); erg.KindOf(err) != erg.KindOf(erg.ErrInvalid) {
		t.Errorf("reinstall of v1: %v", err)
	}
	if res, err := in.Install(ctx, File(v1), Options{SkipOld: true}); err != nil || res.Installed {
		t.Errorf("reinstall of v1 with SkipOld = %+v, %v", res, err)
	}
	b, _ := os.ReadFile(v2)
	b[len(b)/2] ^= 0x55
	bad := filepath.Join(t.TempDir(), "bad.erg")
	os.WriteFile(bad, b, 0o600)
	if _, err := in.Install(ctx, File(bad), Options{}); erg.KindOf(err) != erg.KindOf(erg.ErrInvalid) {
		t.Errorf("install of a tampered package: %v", err)
	}
	if n := entries(); n != 1 {
		t.Errorf("packages/ holds %d entries after a refusal", n)
	}
	if res, err := in.Install(ctx, File(v2), Options{}); err != nil || res.Manifest.Version != 2 {
		t.Fatalf("upgrade = %+v, %v", res, err)
	}

	tree := writeApp(t, key, 7, 1<<10)
	for _, mp := range []string{"dev", "proc", "tmp", "var"} {
		os.Mkdir(filepath.Join(tree, mp), 0o755)
	}
	r1, err := in.Install(ctx, Tree(tree), Options{})
	if err != nil || !r1.Installed || r1.Manifest.Version != 7 {
		t.Fatalf("tree install = %+v, %v", r1, err)
	}
	r2, err := in.Install(ctx, Tree(tree), Options{})
	if err != nil || r2.Tree != r1.Tree {
		t.Fatalf("tree reinstall = %+v, %v; first %s", r2, err, r1.Tree)
	}
	os.Remove(filepath.Join(tree, "proc"))
	if _, err := in.Install(ctx, Tree(tree), Options{}); err == nil {
		t.Error("installed a tree without its mount points")
	}
}

// An install the disk has no room for, by what the package unpacks to,
// is refused before anything is written.
func TestInstallRefusedWithoutRoom(t *testing.T) {
	ctx := context.Background()
	in, pkgs := newInstaller(t)
	var asked int64
	in.cfg.Room = func(n int64) error {
		asked = n
		return fmt.Errorf("%w: no room for %d bytes", erg.ErrTooLarge, n)
	}
	key, _ := apppkg.GenerateKey()
	var buf bytes.Buffer
	if _, err := apppkg.Pack(ctx, writeApp(t, key, 1, 256<<10), key, &buf, apppkg.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "app.erg")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Install(ctx, File(p), Options{}); !errors.Is(err, erg.ErrTooLarge) {
		t.Fatalf("install without room: %v", err)
	}
	if asked < 256<<10 {
		t.Errorf("Room asked for %d bytes, less than the package's 256 KiB file", asked)
	}
	if es, _ := os.ReadDir(pkgs); len(es) != 0 {
		t.Errorf("a refused install left %d entries in packages/", len(es))
	}
	var n int
	in.cfg.DB.QueryRow(`SELECT COUNT(*) FROM apps`).Scan(&n)
	if n != 0 {
		t.Errorf("a refused install recorded %d apps", n)
	}
}
