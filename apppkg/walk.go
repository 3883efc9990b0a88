package apppkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/multiformats/go-multicodec"
)

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
