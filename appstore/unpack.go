package appstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	uio "github.com/ipfs/boxo/ipld/unixfs/io"
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
	u := &unpacker{ctx: ctx, pkg: pkg, progress: opts.Progress}
	var dirs []string
	for i := range pkg.entries {
		e := &pkg.entries[i]
		if err := ctx.Err(); err != nil {
			return err
		}
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
			if err := u.file(p, e); err != nil {
				return fmt.Errorf("/%s: %w", e.path, err)
			}
		}
	}
	// Children before parents, so each directory is complete when it is
	// synced and made read-only; the tree is durable before the rename
	// makes it visible.
	for _, d := range slices.Backward(dirs) {
		if err := syncDir(d); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o555); err != nil {
			return err
		}
	}
	if u.progress != nil {
		u.progress(u.done, pkg.bytes)
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

type unpacker struct {
	ctx        context.Context
	pkg        *Package
	done, last int64
	progress   func(done, total int64)
}

func (u *unpacker) file(p string, e *entry) error {
	r, err := uio.NewDagReader(u.ctx, e.node, u.pkg.store)
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
			u.done += int64(k)
			if u.progress != nil && u.done-u.last >= 1<<20 {
				u.last = u.done
				u.progress(u.done, u.pkg.bytes)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
		if err := u.ctx.Err(); err != nil {
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
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
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
