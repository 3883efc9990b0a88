package apppkg

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	uih "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	ipld "github.com/ipfs/go-ipld-format"
)

// SizeLimits bound what a package may hold. A zero field takes its default:
// 1 GiB for MaxPackage, 512 MiB for MaxFile, 100000 for MaxEntries.
type SizeLimits struct {
	// MaxPackage caps the package file and, separately, the sum of the
	// sizes of all its files.
	MaxPackage int64
	// MaxFile caps one file.
	MaxFile int64
	// MaxEntries caps the number of files, directories and symlinks.
	MaxEntries int
}

var defaultSizeLimits = SizeLimits{MaxPackage: 1 << 30, MaxFile: 512 << 20, MaxEntries: 100_000}

func (l SizeLimits) withDefaults() SizeLimits {
	if l.MaxPackage <= 0 {
		l.MaxPackage = defaultSizeLimits.MaxPackage
	}
	if l.MaxFile <= 0 {
		l.MaxFile = defaultSizeLimits.MaxFile
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = defaultSizeLimits.MaxEntries
	}
	return l
}

// ErrTooLarge is wrapped by every error about a size limit.
var ErrTooLarge = errors.New("over the size limit")

// mountPoints are the empty directories every package root has, because the
// sandbox mounts over them and a read-only root cannot grow them later.
var mountPoints = []string{"dev", "proc", "tmp", "var"}

// PackOptions tune Pack.
type PackOptions struct {
	// Progress, if set, is called now and then with the file bytes done so
	// far and the total.
	Progress func(done, total int64)
	Limits   SizeLimits
	// TempDir holds the scratch file Pack builds the package in; empty means
	// os.TempDir.
	TempDir string
}

// Pack imports the app tree at dir as a UnixFS DAG, signs it with key and
// writes the package file to w. The manifest's id must be key's app id. Pack
// refuses special files, setuid or setgid bits, symlinks that are absolute
// or leave the tree, and anything over opts.Limits. The same tree and key
// always give the same bytes: modes are normalised (0444, 0555 for
// executables and directories) and no times are stored. When w is an empty
// regular file, the package is built in place in it (and it holds partial
// output if Pack fails); otherwise in a scratch file under opts.TempDir.
func Pack(ctx context.Context, dir string, key ed25519.PrivateKey, w io.Writer, opts PackOptions) (*Package, error) {
	lim := opts.Limits.withDefaults()
	fail := func(err error) (*Package, error) { return nil, fmt.Errorf("pack %s: %w", dir, err) }

	mfi, err := os.Lstat(filepath.Join(dir, ManifestFile))
	if err != nil {
		return fail(err)
	}
	if !mfi.Mode().IsRegular() || mfi.Size() > maxManifestSize {
		return fail(fmt.Errorf("%s must be a regular file of at most %d bytes", ManifestFile, maxManifestSize))
	}
	manifest, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return fail(err)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return fail(err)
	}
	appID := AppID(key.Public().(ed25519.PublicKey))
	if m.ID != appID {
		return fail(fmt.Errorf("manifest field \"id\" is %q but the signing key's app id is %s", m.ID, appID))
	}

	tree, err := scanTree(dir, lim)
	if err != nil {
		return fail(err)
	}
	if m.Icon != "" {
		if e, ok := tree.byPath[m.Icon]; !ok || !e.mode.IsRegular() {
			return fail(fmt.Errorf("manifest field \"icon\": %s is not a file in the tree", m.Icon))
		}
	}

	sink := newDirectSink(w)
	if sink == nil {
		if sink, err = newCarSink(opts.TempDir); err != nil {
			return fail(err)
		}
	}
	defer sink.Close()
	im := &importer{ctx: ctx, root: dir, sink: sink, lim: lim, total: tree.bytes, progress: opts.Progress}
	root, err := im.directory("")
	if err != nil {
		return fail(err)
	}
	if opts.Progress != nil {
		opts.Progress(im.done, im.total)
	}

	_, size, err := sink.finish(w, key, m.Version, root.Cid(), manifest)
	if err != nil {
		return fail(err)
	}
	if size > lim.MaxPackage {
		return fail(fmt.Errorf("package is %d bytes: %w of %d", size, ErrTooLarge, lim.MaxPackage))
	}
	return &Package{Manifest: m, ManifestRaw: manifest, AppID: appID, Version: m.Version, CID: root.Cid(), Size: size}, nil
}

const maxManifestSize = 1 << 20

type scanEntry struct {
	mode   fs.FileMode
	size   int64
	target string
}

type scannedTree struct {
	byPath map[string]scanEntry
	bytes  int64
}

// scanTree checks every entry of the tree before anything is imported, so
// a refusal costs no work and the total for progress is known.
func scanTree(dir string, lim SizeLimits) (*scannedTree, error) {
	t := &scannedTree{byPath: map[string]scanEntry{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		mode := fi.Mode()
		if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			return fmt.Errorf("%s has the setuid or setgid bit; packages may not carry either", rel)
		}
		e := scanEntry{mode: mode}
		switch {
		case mode.IsDir():
		case mode.IsRegular():
			e.size = fi.Size()
			if e.size > lim.MaxFile {
				return fmt.Errorf("%s is %d bytes: %w of %d per file", rel, e.size, ErrTooLarge, lim.MaxFile)
			}
			t.bytes += e.size
			if t.bytes > lim.MaxPackage {
				return fmt.Errorf("the files add up to more than %d bytes: %w", lim.MaxPackage, ErrTooLarge)
			}
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkLinkTarget(rel, target); err != nil {
				return err
			}
			e.target = target
		default:
			return fmt.Errorf("%s is a %s; packages hold only files, directories and symlinks", rel, kindName(mode))
		}
		if rel != "." {
			t.byPath[rel] = e
		}
		if len(t.byPath)+len(mountPoints) > lim.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", lim.MaxEntries, ErrTooLarge)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	readlink := func(p string) (string, bool) {
		e, ok := t.byPath[p]
		return e.target, ok && e.mode&fs.ModeSymlink != 0
	}
	for p, e := range t.byPath {
		if e.mode&fs.ModeSymlink != 0 {
			if err := resolveInTree(p, readlink); err != nil {
				return nil, err
			}
		}
	}
	for _, mp := range mountPoints {
		if e, ok := t.byPath[mp]; ok && !e.mode.IsDir() {
			return nil, fmt.Errorf("%s must be a directory: the sandbox mounts over it", mp)
		}
	}
	return t, nil
}

func kindName(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file (" + m.Type().String() + ")"
}

// checkLinkTarget refuses a symlink at rel (a slash path in the tree) whose
// target is absolute or, resolved in the tree, leaves it.
func checkLinkTarget(rel, target string) error {
	if target == "" || strings.ContainsRune(target, 0) || len(target) > 4096 {
		return fmt.Errorf("symlink %s has an invalid target", rel)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symlink %s points to the absolute path %s; use a relative link inside the tree", rel, target)
	}
	if r := path.Join(path.Dir(rel), target); r == ".." || strings.HasPrefix(r, "../") {
		return fmt.Errorf("symlink %s points to %s, outside the tree", rel, target)
	}
	return nil
}

type importer struct {
	ctx         context.Context
	root        string
	sink        *carSink
	lim         SizeLimits
	done, total int64
	progress    func(done, total int64)
	lastReport  int64
}

// fileMode normalises a mode: every package entry is read-only, and files
// keep only whether they are executable.
func fileMode(m fs.FileMode) fs.FileMode {
	if m.IsDir() || m&0o111 != 0 {
		return 0o555
	}
	return 0o444
}

func (im *importer) directory(rel string) (ipld.Node, error) {
	if err := im.ctx.Err(); err != nil {
		return nil, err
	}
	d, err := uio.NewDirectory(im.sink, uio.WithCidBuilder(cidBuilder), uio.WithStat(0o555|fs.ModeDir, time.Time{}))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(im.root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
		p := path.Join(rel, e.Name())
		var nd ipld.Node
		switch t := e.Type(); {
		case t.IsDir():
			nd, err = im.directory(p)
		case t.IsRegular():
			nd, err = im.file(p)
		case t&fs.ModeSymlink != 0:
			nd, err = im.symlink(p)
		default:
			err = fmt.Errorf("%s is a %s", p, kindName(t))
		}
		if err != nil {
			return nil, err
		}
		if err := d.AddChild(im.ctx, e.Name(), nd); err != nil {
			return nil, err
		}
	}
	if rel == "" {
		for _, mp := range mountPoints {
			if names[mp] {
				continue
			}
			empty := ft.EmptyDirNodeWithStat(0o555|fs.ModeDir, time.Time{})
			if err := empty.SetCidBuilder(cidBuilder); err != nil {
				return nil, err
			}
			if err := im.sink.Add(im.ctx, empty); err != nil {
				return nil, err
			}
			if err := d.AddChild(im.ctx, mp, empty); err != nil {
				return nil, err
			}
		}
	}
	nd, err := d.GetNode()
	if err != nil {
		return nil, err
	}
	return nd, im.sink.Add(im.ctx, nd)
}

func (im *importer) file(rel string) (ipld.Node, error) {
	f, err := os.OpenFile(filepath.Join(im.root, filepath.FromSlash(rel)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return nil, fmt.Errorf("%s changed while packing", rel)
	}
	// The limit reader guards against a file growing after the scan.
	r := &progressReader{r: io.LimitReader(f, im.lim.MaxFile+1), im: im}
	params := uih.DagBuilderParams{
		Maxlinks:   uih.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cidBuilder,
		Dagserv:    im.sink,
		FileMode:   fileMode(fi.Mode()),
	}
	db, err := params.New(chunker.NewSizeSplitter(r, chunker.DefaultBlockSize))
	if err != nil {
		return nil, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", rel, err)
	}
	if _, raw := nd.(*merkledag.RawNode); raw && params.FileMode&0o111 != 0 {
		// A one-chunk file is just its raw leaf, which has no room for a
		// mode; wrap it so that the executable bit survives.
		fsn := ft.NewFSNode(ft.TFile)
		fsn.AddBlockSize(uint64(len(nd.RawData())))
		fsn.SetMode(params.FileMode)
		b, err := fsn.GetBytes()
		if err != nil {
			return nil, err
		}
		wrap := merkledag.NodeWithData(b)
		if err := wrap.SetCidBuilder(cidBuilder); err != nil {
			return nil, err
		}
		if err := wrap.AddNodeLink("", nd); err != nil {
			return nil, err
		}
		if err := im.sink.Add(im.ctx, wrap); err != nil {
			return nil, err
		}
		nd = wrap
	}
	if r.n > im.lim.MaxFile {
		return nil, fmt.Errorf("%s is over %d bytes: %w", rel, im.lim.MaxFile, ErrTooLarge)
	}
	if im.done > im.lim.MaxPackage {
		return nil, fmt.Errorf("the files add up to more than %d bytes: %w", im.lim.MaxPackage, ErrTooLarge)
	}
	return nd, nil
}

func (im *importer) symlink(rel string) (ipld.Node, error) {
	target, err := os.Readlink(filepath.Join(im.root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	if err := checkLinkTarget(rel, target); err != nil {
		return nil, err
	}
	data, err := ft.SymlinkData(target)
	if err != nil {
		return nil, err
	}
	nd := merkledag.NodeWithData(data)
	if err := nd.SetCidBuilder(cidBuilder); err != nil {
		return nil, err
	}
	return nd, im.sink.Add(im.ctx, nd)
}

type progressReader struct {
	r  io.Reader
	n  int64
	im *importer
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.im.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.im.done += int64(n)
	if p.im.progress != nil && p.im.done-p.im.lastReport >= 1<<20 {
		p.im.lastReport = p.im.done
		p.im.progress(p.im.done, p.im.total)
	}
	return n, err
}

// resolveInTree follows the symlink at rel through the tree's other symlinks
// the way the kernel would, and fails if any step climbs above the root.
// Checking each link's text alone is not enough: with s/up -> "..", the
// link x -> "s/up/.." looks like it stays inside but resolves outside.
func resolveInTree(rel string, readlink func(p string) (string, bool)) error {
	hops := 0
	var walk func(dir []string, target string) ([]string, error)
	walk = func(dir []string, target string) ([]string, error) {
		cur := slices.Clone(dir)
		for part := range strings.SplitSeq(target, "/") {
			switch part {
			case "", ".":
				continue
			case "..":
				if len(cur) == 0 {
					return nil, fmt.Errorf("symlink %s resolves outside the tree", rel)
				}
				cur = cur[:len(cur)-1]
				continue
			}
			next := append(cur, part)
			if t, ok := readlink(strings.Join(next, "/")); ok {
				if hops++; hops > 40 {
					return nil, fmt.Errorf("symlink %s: too many levels of links", rel)
				}
				if strings.HasPrefix(t, "/") {
					return nil, fmt.Errorf("symlink %s leads through an absolute link", rel)
				}
				var err error
				if next, err = walk(cur, t); err != nil {
					return nil, err
				}
			}
			cur = next
		}
		return cur, nil
	}
	var dir []string
	if d := path.Dir(rel); d != "." {
		dir = strings.Split(d, "/")
	}
	t, _ := readlink(rel)
	_, err := walk(dir, t)
	return err
}
