package apppkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// UnpackOptions tune Unpack.
type UnpackOptions struct {
	// Progress, if set, is called now and then with the file bytes written
	// so far and the total.
	Progress func(done, total int64)
}

// Unpack writes the tree of a package from Open or OpenFile to dest, which
// must not exist yet. The tree is built in a temporary sibling of dest,
// synced to disk and renamed into place, so dest either appears complete or
// not at all; on any failure everything written is removed. The result is
// read-only: directories 0555, files 0444 or 0555, never setuid.
func Unpack(ctx context.Context, pkg *Package, dest string, opts UnpackOptions) (err error) {
	if pkg == nil || pkg.store == nil {
		return errors.New("unpack: the package was not opened with Open or OpenFile")
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("unpack %s: it already exists", dest)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpack: %w", err)
	}
	parent := filepath.Dir(dest)
	tmp, err := os.MkdirTemp(parent, filepath.Base(dest)+".tmp-")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer func() {
		if err != nil {
			RemoveTree(tmp)
			err = fmt.Errorf("unpack %s to %s: %w", pkg.CID, dest, err)
		}
	}()
	u := &unpacker{pkg: pkg, progress: opts.Progress}
	// Directories and links first, in walk order (parents come before
	// children); then the files, several at a time, since creating a file
	// costs as much as writing a megabyte on some file systems and the
	// writes and hashing of one file can overlap the creation of the next.
	var dirs []string
	var files []int
	for i := range pkg.entries {
		e := &pkg.entries[i]
		p := filepath.Join(tmp, filepath.FromSlash(e.path))
		switch e.kind {
		case kindDir:
			if e.path != "" {
				if err := os.Mkdir(p, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, p)
		case kindSymlink:
			if err := os.Symlink(e.target, p); err != nil {
				return err
			}
		case kindFile:
			files = append(files, i)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(unpackWorkers)
	for _, i := range files {
		if gctx.Err() != nil {
			break
		}
		e := &pkg.entries[i]
		g.Go(func() error {
			if err := u.file(gctx, filepath.Join(tmp, filepath.FromSlash(e.path)), e); err != nil {
				return fmt.Errorf("/%s: %w", e.path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Children before parents, so each directory is complete when it is
	// made read-only.
	for _, d := range slices.Backward(dirs) {
		if err := os.Chmod(d, 0o555); err != nil {
			return err
		}
	}
	// The tree is durable before the rename makes it visible. One syncfs
	// does for the whole tree what an fsync per file and directory would,
	// at a fraction of the cost for packages of many files.
	if err := syncFS(tmp); err != nil {
		return err
	}
	if u.progress != nil {
		u.progress(u.done.Load(), pkg.bytes)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return err
	}
	if err := syncDir(parent); err != nil {
		RemoveTree(dest)
		return err
	}
	return nil
}

// unpackWorkers is how many files Unpack writes at once.
const unpackWorkers = 4

type unpacker struct {
	pkg      *Package
	done     atomic.Int64
	mu       sync.Mutex // serialises progress calls
	last     int64
	progress func(done, total int64)
}

func (u *unpacker) file(ctx context.Context, p string, e *entry) error {
	r, err := uio.NewDagReader(ctx, e.node, u.pkg.store)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > e.size {
				return fmt.Errorf("holds more than its %d bytes", e.size)
			}
			if _, err := f.Write(buf[:k]); err != nil {
				return err
			}
			u.report(int64(k))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if n != e.size {
		return fmt.Errorf("holds %d bytes, not %d", n, e.size)
	}
	mode := fs.FileMode(0o444)
	if e.exec {
		mode = 0o555
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	return f.Close()
}

func (u *unpacker) report(k int64) {
	done := u.done.Add(k)
	if u.progress == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if done-u.last >= 1<<20 {
		u.last = done
		u.progress(done, u.pkg.bytes)
	}
}

// syncFS flushes the file system holding p to disk.
func syncFS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", p, err)
	}
	return nil
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// RemoveTree removes a tree whose directories were made read-only, as
// Unpack and the node's installs leave them.
func RemoveTree(root string) error {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(root)
}
