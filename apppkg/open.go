package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/multiformats/go-multicodec"
)

// Package is a verified package: what its descriptor and manifest say, and
// (when it came from Open) the means to unpack it.
type Package struct {
	Manifest    *Manifest
	ManifestRaw []byte
	AppID       string
	Version     int64
	// CID is the root of the package's UnixFS tree: the package id.
	CID cid.Cid
	// Size is the size of the package file in bytes.
	Size int64

	store       *carStore
	desc        cid.Cid // the signed descriptor block
	manifestSHA string  // the manifest hash the descriptor signs
	entries     []entry
	bytes       int64 // sum of file sizes
	closer      io.Closer
}

// UnpackedBytes is what the package's files take unpacked, in bytes.
func (p *Package) UnpackedBytes() int64 { return p.bytes }

// Close releases the file OpenFile opened. It is safe on any Package.
func (p *Package) Close() error {
	if p.closer == nil {
		return nil
	}
	err := p.closer.Close()
	p.closer = nil
	return err
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

// entry is one verified path of the tree, parents before children.
type entry struct {
	path   string // slash path relative to the root; "" is the root
	kind   entryKind
	node   ipld.Node
	size   int64
	exec   bool
	target string
}

// OpenFile opens and verifies the package file at name; see Open. Close the
// package when done with it.
func OpenFile(ctx context.Context, name string, limits SizeLimits) (*Package, error) {
	return OpenFileProgress(ctx, name, limits, nil)
}

// OpenFileProgress is OpenFile that calls progress now and then with the
// bytes checked so far and the total, for packages big enough to take a
// while.
func OpenFileProgress(ctx context.Context, name string, limits SizeLimits, progress func(done, total int64)) (*Package, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open package: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open package: %w", err)
	}
	p, err := open(ctx, f, fi.Size(), limits.withDefaults(), progress)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open package: %w", err)
	}
	p.closer = f
	return p, nil
}

// Open verifies the size bytes of a package file read through r: the CAR is
// well formed, every block's bytes match its CID, the descriptor is signed
// by the key its app id names, the signed manifest hash matches the
// erg.json in the tree, the DAG is complete and holds nothing else, every
// name is a plain file name, every symlink stays inside, no entry is a
// special file or carries setuid, setgid or sticky bits, and everything is
// under limits. r must stay readable and unchanged until the package is
// unpacked; blocks are hashed again as Unpack reads them.
func Open(ctx context.Context, r io.ReaderAt, size int64, limits SizeLimits) (*Package, error) {
	p, err := open(ctx, r, size, limits.withDefaults(), nil)
	if err != nil {
		return nil, fmt.Errorf("open package: %w", err)
	}
	return p, nil
}

func open(ctx context.Context, r io.ReaderAt, size int64, lim SizeLimits, progress func(done, total int64)) (*Package, error) {
	if size > lim.MaxPackage {
		return nil, fmt.Errorf("package is %d bytes: %w of %d", size, ErrTooLarge, lim.MaxPackage)
	}
	cs, descCID, err := indexCAR(ctx, r, size, lim, progress)
	if err != nil {
		return nil, err
	}
	p, err := openStore(ctx, cs, descCID, lim, len(cs.spans))
	if err != nil {
		return nil, err
	}
	if n := len(cs.spans) - len(cs.visited); n > 0 {
		return nil, fmt.Errorf("the file carries %d blocks that are not part of the package", n)
	}
	p.Size = size
	return p.finish(ctx)
}

// OpenDAG verifies, in place, the package whose signed descriptor is the
// block descCID in bs, as Open verifies a package file: the descriptor is
// signed by the key its app id names, the signed manifest hash matches the
// erg.json in the tree, the DAG under the signed root is complete, every
// name is a plain file name, every symlink stays inside, no entry is a
// special file or carries setuid, setgid or sticky bits, and everything is
// under limits. Every block is hashed as it is read, here and as Unpack
// reads it; nothing is copied. The package's Size is the bytes of its
// blocks, the descriptor's included. bs must keep the blocks until the
// package is unpacked.
func OpenDAG(ctx context.Context, bs blockstore.Blockstore, descCID cid.Cid, limits SizeLimits) (*Package, error) {
	lim := limits.withDefaults()
	if err := checkCID(descCID); err != nil || descCID.Prefix().Codec != uint64(multicodec.Raw) {
		return nil, fmt.Errorf("open package: %s is not a package descriptor", descCID)
	}
	cs := &carStore{bs: bs}
	p, err := openStore(ctx, cs, descCID, lim, maxBlocks(lim))
	if err != nil {
		return nil, fmt.Errorf("open package: %w", err)
	}
	if p.Size = cs.walked; p.Size > lim.MaxPackage {
		return nil, fmt.Errorf("open package: its blocks add up to %d bytes: %w of %d", p.Size, ErrTooLarge, lim.MaxPackage)
	}
	if p, err = p.finish(ctx); err != nil {
		return nil, fmt.Errorf("open package: %w", err)
	}
	return p, nil
}

// maxBlocks bounds the blocks of a package within lim.
func maxBlocks(lim SizeLimits) int { return 4*lim.MaxEntries + int(lim.MaxPackage/4096) }

// openStore checks the descriptor in cs and walks the tree it signs.
// blocks bounds how many blocks the walk may read.
func openStore(ctx context.Context, cs *carStore, descCID cid.Cid, lim SizeLimits, blocks int) (*Package, error) {
	descBytes, err := cs.read(descCID)
	if err != nil {
		return nil, err
	}
	d, err := parseDescriptor(descBytes)
	if err != nil {
		return nil, err
	}
	root, err := cid.Decode(d.Root)
	if err != nil {
		return nil, fmt.Errorf("descriptor root: %w", err)
	}
	p := &Package{AppID: d.App, Version: d.Version, CID: root, store: cs, desc: descCID, manifestSHA: d.ManifestSHA256}
	cs.visited = map[cid.Cid]bool{descCID: true}
	cs.walked = int64(len(descBytes))
	cs.budget = lim.MaxPackage + 1024*int64(blocks+lim.MaxEntries)
	w := &walker{ctx: ctx, s: cs, lim: lim, p: p}
	if err := w.walk(root); err != nil {
		return nil, err
	}
	return p, nil
}

// finish checks the walked tree: its links, its manifest against the
// descriptor, its icon and mount points.
func (p *Package) finish(ctx context.Context) (*Package, error) {
	cs := p.store

	var mfile *entry
	names := map[string]*entry{}
	for i := range p.entries {
		names[p.entries[i].path] = &p.entries[i]
	}
	readlink := func(p string) (string, bool) {
		if e := names[p]; e != nil && e.kind == kindSymlink {
			return e.target, true
		}
		return "", false
	}
	for _, e := range p.entries {
		if e.kind == kindSymlink {
			if err := resolveInTree(e.path, readlink); err != nil {
				return nil, err
			}
		}
	}
	mfile = names[ManifestFile]
	if mfile == nil || mfile.kind != kindFile || mfile.size > maxManifestSize {
		return nil, fmt.Errorf("no %s of at most %d bytes at the package root", ManifestFile, maxManifestSize)
	}
	raw, err := readAll(ctx, cs, mfile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestFile, err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != p.manifestSHA {
		return nil, fmt.Errorf("%s does not match the signed manifest hash", ManifestFile)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	if m.ID != p.AppID {
		return nil, fmt.Errorf("manifest field \"id\" is %q but the package is signed by app %s", m.ID, p.AppID)
	}
	if m.Version != p.Version {
		return nil, fmt.Errorf("manifest field \"version\" is %d but the signed version is %d", m.Version, p.Version)
	}
	if m.Icon != "" {
		if e := names[m.Icon]; e == nil || e.kind != kindFile {
			return nil, fmt.Errorf("manifest field \"icon\": %s is not a file in the package", m.Icon)
		}
	}
	for _, mp := range mountPoints {
		if e := names[mp]; e == nil || e.kind != kindDir {
			return nil, fmt.Errorf("the package lacks the mount point directory /%s", mp)
		}
	}
	p.Manifest, p.ManifestRaw = m, raw
	cs.visited = nil // the walk is bounded now; Unpack reads without accounting
	return p, nil
}

func parseDescriptor(b []byte) (*descriptor, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d descriptor
	if err := dec.Decode(&d); err != nil || dec.More() {
		return nil, fmt.Errorf("descriptor is not valid JSON: %v", err)
	}
	if d.Format != descriptorFormat {
		return nil, fmt.Errorf("descriptor format %q, want %q", d.Format, descriptorFormat)
	}
	pub, err := ParseAppID(d.App)
	if err != nil {
		return nil, fmt.Errorf("descriptor: %w", err)
	}
	if !ed25519.Verify(pub, d.signedBytes(), d.Signature) {
		return nil, fmt.Errorf("bad signature: the package is not signed by the key of app %s", d.App)
	}
	return &d, nil
}
