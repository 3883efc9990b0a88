package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"erg"
	"erg/apppkg"
)

type treeSource string

// Tree is an app tree under development: a directory with erg.json at its
// root, unsigned. It is copied into packages/ under the hash of its
// content, so a tree installed already with the same content is left as
// it is and a rebuilt one lands beside it, and it is recorded whatever
// its version.
func Tree(dir string) Source { return treeSource(dir) }

func (t treeSource) open(ctx context.Context, _ apppkg.SizeLimits, _ erg.InstallProgress) (*candidate, error) {
	src := string(t)
	m, err := apppkg.ReadManifest(src)
	if err != nil {
		return nil, err
	}
	for _, mp := range []string{"dev", "proc", "tmp", "var"} {
		if fi, err := os.Stat(filepath.Join(src, mp)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("app tree %s lacks the empty %s/ directory the sandbox mounts over", src, mp)
		}
	}
	sum, err := hashTree(src)
	if err != nil {
		return nil, err
	}
	return &candidate{m: m, name: "dir-" + sum[:32], desc: src,
		unpack: func(_ context.Context, dst string, _ erg.InstallProgress) error {
			tmp := dst + ".tmp"
			os.RemoveAll(tmp)
			if err := copyTree(src, tmp); err != nil {
				os.RemoveAll(tmp)
				return err
			}
			if err := os.Rename(tmp, dst); err != nil {
				apppkg.RemoveTree(tmp)
				return err
			}
			return nil
		}}, nil
}

// hashTree hashes names, modes and contents, so a rebuilt app with any
// change lands in a new directory and running grains keep the old one.
func hashTree(root string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s\x00%o\x00", rel, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return "", err
			}
			io.WriteString(h, t)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyTree copies regular files, dirs and symlinks, and leaves the copy
// read-only: world-readable so the sandbox's mapped user can run it, and
// writable by no one.
func copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			return os.Mkdir(target, 0o755)
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case mode.IsRegular():
			perm := fs.FileMode(0o444)
			if mode&0o111 != 0 {
				perm = 0o555
			}
			return copyFile(p, target, perm)
		default:
			return fmt.Errorf("%s: unsupported file type %v", rel, mode.Type())
		}
	})
	if err != nil {
		return err
	}
	// Directories last, deepest first, so the walk above could still write.
	var dirs []string
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
