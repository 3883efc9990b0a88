package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
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

// carStore serves the blocks of a package: those of a package file, whose
// CAR payload it indexes itself (the CARv2 index is not trusted), or, for
// OpenDAG, those in a blockstore. It hashes every block each time it reads
// it.
type carStore struct {
	r       io.ReaderAt
	spans   map[cid.Cid]span
	bs      blockstore.Blockstore // instead of r and spans
	visited map[cid.Cid]bool
	walked  int64 // bytes of the blocks visited, each once
	budget  int64 // work left for the walk; bounds DAGs that reuse blocks
}

func indexCAR(ctx context.Context, r io.ReaderAt, size int64, lim SizeLimits, progress func(done, total int64)) (*carStore, cid.Cid, error) {
	// The headers are parsed here rather than by a general CBOR decoder:
	// a package has exactly one form of them, and anything else is refused
	// before any untrusted length reaches an allocator.
	head := make([]byte, car.PragmaSize)
	if _, err := r.ReadAt(head, 0); err != nil || !bytes.Equal(head, car.Pragma) {
		return nil, cid.Undef, errors.New("not a CARv2 file")
	}
	var h car.Header
	if _, err := h.ReadFrom(io.NewSectionReader(r, car.PragmaSize, car.HeaderSize)); err != nil {
		return nil, cid.Undef, fmt.Errorf("CAR is truncated in its header: %w", err)
	}
	if h.DataOffset < car.PragmaSize+car.HeaderSize || h.DataOffset > uint64(size) || h.DataSize > uint64(size)-h.DataOffset {
		return nil, cid.Undef, errors.New("CAR is truncated: data payload runs past the end")
	}
	br := &offsetReader{r: io.NewSectionReader(r, int64(h.DataOffset), int64(h.DataSize)), off: int64(h.DataOffset)}
	hl, err := binary.ReadUvarint(br)
	if err != nil || hl > 1024 {
		return nil, cid.Undef, errors.New("CAR payload header is malformed")
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(br, hb); err != nil {
		return nil, cid.Undef, fmt.Errorf("CAR is truncated in its payload header: %w", err)
	}
	root, err := parseV1Header(hb)
	if err != nil {
		return nil, cid.Undef, err
	}
	if root.Prefix().Codec != uint64(multicodec.Raw) || checkCID(root) != nil {
		return nil, cid.Undef, errors.New("CAR root is not a package descriptor")
	}
	s := &carStore{r: r, spans: map[cid.Cid]span{}}
	end := int64(h.DataOffset + h.DataSize)
	var last int64
	for br.off < end {
		if done := br.off - int64(h.DataOffset); done-last >= 1<<20 {
			last = done
			if err := ctx.Err(); err != nil {
				return nil, cid.Undef, err
			}
			if progress != nil {
				progress(done, int64(h.DataSize))
			}
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated or malformed at byte %d: %v", br.off, err)
		}
		if n == 0 || n > maxBlockSize+128 || int64(n) > end-br.off {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated or malformed at byte %d: section of %d bytes", br.off, n)
		}
		sec := make([]byte, n)
		start := br.off
		if _, err := io.ReadFull(br, sec); err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated: %w", err)
		}
		cl, c, err := cid.CidFromBytes(sec)
		if err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR section at byte %d: %w", start, err)
		}
		if err := checkCID(c); err != nil {
			return nil, cid.Undef, err
		}
		if err := verifyBlock(c, sec[cl:]); err != nil {
			return nil, cid.Undef, err
		}
		if _, dup := s.spans[c]; dup {
			return nil, cid.Undef, fmt.Errorf("block %s appears twice", c)
		}
		if len(s.spans) > maxBlocks(lim) {
			return nil, cid.Undef, fmt.Errorf("too many blocks: %w", ErrTooLarge)
		}
		s.spans[c] = span{start + int64(cl), int64(n) - int64(cl)}
	}
	if _, ok := s.spans[root]; !ok {
		return nil, cid.Undef, errors.New("the CAR does not carry its descriptor block")
	}
	if progress != nil {
		progress(int64(h.DataSize), int64(h.DataSize))
	}
	return s, root, nil
}

// parseV1Header reads the one root from a CARv1 header in the form
// carV1Header writes, which is how DAG-CBOR encodes {roots: [root], version: 1}.
func parseV1Header(b []byte) (cid.Cid, error) {
	bad := errors.New("CAR payload header is not {roots: [descriptor], version: 1}")
	pre := []byte{0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58}
	post := []byte{0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}
	if len(b) < len(pre)+2+len(post) || !bytes.HasPrefix(b, pre) || !bytes.HasSuffix(b, post) {
		return cid.Undef, bad
	}
	n := int(b[len(pre)])
	body := b[len(pre)+1 : len(b)-len(post)]
	if n != len(body) || body[0] != 0 {
		return cid.Undef, bad
	}
	c, err := cid.Cast(body[1:])
	if err != nil {
		return cid.Undef, fmt.Errorf("CAR root: %w", err)
	}
	return c, nil
}

func verifyBlock(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return err
	}
	if !got.Equals(c) {
		return fmt.Errorf("block %s: its bytes do not match its CID (the package is corrupt or was tampered with)", c)
	}
	return nil
}

type offsetReader struct {
	r   io.Reader
	off int64
	b   [1]byte
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *offsetReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(o, o.b[:])
	return o.b[0], err
}

func (s *carStore) read(c cid.Cid) ([]byte, error) {
	if s.bs != nil {
		b, err := s.bs.Get(context.Background(), c)
		if ipld.IsNotFound(err) {
			return nil, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
		}
		if err != nil {
			return nil, fmt.Errorf("read block %s: %w", c, err)
		}
		data := b.RawData()
		if len(data) > maxBlockSize {
			return nil, fmt.Errorf("block %s is larger than %d bytes", c, maxBlockSize)
		}
		if err := verifyBlock(c, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	sp, ok := s.spans[c]
	if !ok {
		return nil, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
	}
	data := make([]byte, sp.size)
	if _, err := s.r.ReadAt(data, sp.off); err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	if err := verifyBlock(c, data); err != nil {
		return nil, err
	}
	return data, nil
}

func (s *carStore) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := s.read(c)
	if err != nil {
		return nil, err
	}
	if s.visited != nil {
		if !s.visited[c] {
			s.walked += int64(len(data))
		}
		s.visited[c] = true
		s.budget -= 1024 + int64(len(data))
		if s.budget < 0 {
			return nil, fmt.Errorf("the package DAG reuses blocks too often: %w", ErrTooLarge)
		}
	}
	return decodeNode(c, data)
}

// leaf accounts for a raw leaf block as Get would, without reading it, and
// returns its length.
func (s *carStore) leaf(ctx context.Context, c cid.Cid) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	sp, ok := s.spans[c]
	if s.bs != nil {
		n, err := s.bs.GetSize(ctx, c)
		if err != nil && !ipld.IsNotFound(err) {
			return 0, fmt.Errorf("read block %s: %w", c, err)
		}
		if ok = err == nil; ok && n > maxBlockSize {
			return 0, fmt.Errorf("block %s is larger than %d bytes", c, maxBlockSize)
		}
		sp.size = int64(n)
	}
	if !ok {
		return 0, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
	}
	if s.visited != nil {
		if !s.visited[c] {
			s.walked += sp.size
		}
		s.visited[c] = true
		s.budget -= 1024 + sp.size
		if s.budget < 0 {
			return 0, fmt.Errorf("the package DAG reuses blocks too often: %w", ErrTooLarge)
		}
	}
	return sp.size, nil
}

func (s *carStore) GetMany(ctx context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	return getMany(ctx, s, cids)
}

func (s *carStore) Add(context.Context, ipld.Node) error        { return errors.ErrUnsupported }
func (s *carStore) AddMany(context.Context, []ipld.Node) error  { return errors.ErrUnsupported }
func (s *carStore) Remove(context.Context, cid.Cid) error       { return errors.ErrUnsupported }
func (s *carStore) RemoveMany(context.Context, []cid.Cid) error { return errors.ErrUnsupported }

type walker struct {
	ctx context.Context
	s   *carStore
	lim SizeLimits
	p   *Package
}

// classify reads a node's UnixFS type and refuses what a package may not hold.
func classify(nd ipld.Node) (pb.Data_DataType, *pb.Data, error) {
	if nd.Cid().Prefix().Codec == uint64(multicodec.Raw) {
		return pb.Data_Raw, nil, nil
	}
	pn, ok := nd.(*merkledag.ProtoNode)
	if !ok {
		return 0, nil, fmt.Errorf("block %s is not dag-pb", nd.Cid())
	}
	d, err := ft.FromBytes(pn.Data())
	if err != nil {
		return 0, nil, fmt.Errorf("block %s is not UnixFS: %w", nd.Cid(), err)
	}
	if mode := d.GetMode(); mode&^0o777 != 0 {
		return 0, nil, fmt.Errorf("block %s has mode %o: setuid, setgid, sticky and file-type bits are refused", nd.Cid(), mode)
	}
	switch t := d.GetType(); t {
	case pb.Data_Raw, pb.Data_File, pb.Data_Directory, pb.Data_HAMTShard, pb.Data_Symlink:
		return t, d, nil
	default:
		return 0, nil, fmt.Errorf("block %s has UnixFS type %s; packages hold only files, directories and symlinks", nd.Cid(), t)
	}
}

func (w *walker) walk(root cid.Cid) error {
	if err := checkCID(root); err != nil {
		return err
	}
	nd, err := w.s.Get(w.ctx, root)
	if err != nil {
		return err
	}
	return w.add("", nd)
}

func (w *walker) add(p string, nd ipld.Node) error {
	if len(w.p.entries) >= w.lim.MaxEntries {
		return fmt.Errorf("more than %d entries: %w", w.lim.MaxEntries, ErrTooLarge)
	}
	t, d, err := classify(nd)
	if err != nil {
		return fmt.Errorf("%s: %w", displayPath(p), err)
	}
	switch t {
	case pb.Data_Directory, pb.Data_HAMTShard:
		w.p.entries = append(w.p.entries, entry{path: p, kind: kindDir, node: nd})
		return w.dir(p, nd)
	case pb.Data_Symlink:
		if len(nd.Links()) != 0 {
			return fmt.Errorf("%s: a symlink with links", displayPath(p))
		}
		target := string(d.GetData())
		if p == "" {
			return errors.New("the package root is a symlink")
		}
		if err := checkLinkTarget(p, target); err != nil {
			return err
		}
		w.p.entries = append(w.p.entries, entry{path: p, kind: kindSymlink, node: nd, target: target})
		return nil
	default:
		if p == "" {
			return errors.New("the package root is a file, not a directory")
		}
		size, err := w.fileSize(nd, t, d)
		if err != nil {
			return fmt.Errorf("%s: %w", displayPath(p), err)
		}
		if size > w.lim.MaxFile {
			return fmt.Errorf("%s is larger than %d bytes: %w per file", displayPath(p), w.lim.MaxFile, ErrTooLarge)
		}
		w.p.bytes += size
		if w.p.bytes > w.lim.MaxPackage {
			return fmt.Errorf("the files add up to more than %d bytes: %w", w.lim.MaxPackage, ErrTooLarge)
		}
		exec := d != nil && d.GetMode()&0o111 != 0
		w.p.entries = append(w.p.entries, entry{path: p, kind: kindFile, node: nd, size: size, exec: exec})
		return nil
	}
}

// fileSize walks a file's blocks, checking each is a file chunk, and returns
// the byte count they really hold, which must match the size claimed.
func (w *walker) fileSize(nd ipld.Node, t pb.Data_DataType, d *pb.Data) (int64, error) {
	if d == nil { // raw leaf
		return int64(len(nd.RawData())), nil
	}
	if t != pb.Data_File && t != pb.Data_Raw {
		return 0, fmt.Errorf("block %s of type %s inside a file", nd.Cid(), t)
	}
	size := int64(len(d.GetData()))
	for _, l := range nd.Links() {
		if err := checkCID(l.Cid); err != nil {
			return 0, err
		}
		if l.Cid.Prefix().Codec == uint64(multicodec.Raw) {
			// A raw leaf is all data, so its length is its section's:
			// indexCAR has hashed it already and Unpack hashes it again
			// as it reads, so reading it here too would only cost time.
			n, err := w.s.leaf(w.ctx, l.Cid)
			if err != nil {
				return 0, err
			}
			if size += n; size > w.lim.MaxFile {
				return size, nil
			}
			continue
		}
		child, err := w.s.Get(w.ctx, l.Cid)
		if err != nil {
			return 0, err
		}
		ct, cd, err := classify(child)
		if err != nil {
			return 0, err
		}
		n, err := w.fileSize(child, ct, cd)
		if err != nil {
			return 0, err
		}
		size += n
		if size > w.lim.MaxFile {
			return size, nil
		}
	}
	if d.Filesize != nil && int64(d.GetFilesize()) != size {
		return 0, fmt.Errorf("claims %d bytes but holds %d", d.GetFilesize(), size)
	}
	return size, nil
}

func (w *walker) dir(p string, nd ipld.Node) error {
	dir, err := uio.NewDirectoryFromNode(w.s, nd)
	if err != nil {
		return fmt.Errorf("%s: %w", displayPath(p), err)
	}
	links, err := dir.Links(w.ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", displayPath(p), err)
	}
	seen := map[string]bool{}
	for _, l := range links {
		if !validName(l.Name) {
			return fmt.Errorf("%s holds the name %q; names must not be empty, '.', '..' or contain '/'", displayPath(p), l.Name)
		}
		if seen[l.Name] {
			return fmt.Errorf("%s holds %q twice", displayPath(p), l.Name)
		}
		seen[l.Name] = true
		if err := checkCID(l.Cid); err != nil {
			return err
		}
		child, err := w.s.Get(w.ctx, l.Cid)
		if err != nil {
			return err
		}
		if err := w.add(path.Join(p, l.Name), child); err != nil {
			return err
		}
	}
	return nil
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && len(n) <= 255 && !strings.ContainsAny(n, "/\x00")
}

func displayPath(p string) string { return "/" + p }

// readAll returns the content of a small verified file.
func readAll(ctx context.Context, s *carStore, e *entry) ([]byte, error) {
	r, err := uio.NewDagReader(ctx, e.node, s)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, e.size+1))
}
