package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"erg/apppkg"
)

// installAppsDir installs what it finds directly below dir: signed package
// files (*.erg), each unless the same or a newer version is installed, and
// app trees (directories with erg.json at their root), the unsigned form
// for development. Both end in packages/ and the apps table.
func (n *Node) installAppsDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("apps dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			if filepath.Ext(e.Name()) != ".erg" {
				continue
			}
			app, installed, err := n.installPackageFile(ctx, p, true)
			if err != nil {
				return fmt.Errorf("install %s: %w", p, err)
			}
			if installed {
				n.log.Info("app installed", "app", app.ID, "version", app.DisplayVersion, "from", p)
			}
			continue
		}
		if _, err := os.Stat(filepath.Join(p, apppkg.ManifestFile)); err != nil {
			continue
		}
		m, err := n.InstallTree(ctx, p)
		if err != nil {
			return fmt.Errorf("install %s: %w", p, err)
		}
		n.log.Info("app installed", "app", m.ID, "version", m.DisplayVersion, "from", p)
	}
	return nil
}

// InstallTree copies an app tree into the data dir and records the app. A
// tree already installed with the same content is left as it is.
func (n *Node) InstallTree(ctx context.Context, src string) (*apppkg.Manifest, error) {
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
	n.installMu.Lock()
	defer n.installMu.Unlock()
	dst := filepath.Join(n.cfg.DataDir, packagesDir, "dir-"+sum[:32])
	if _, err := os.Stat(dst); os.IsNotExist(err) {
		tmp := dst + ".tmp"
		os.RemoveAll(tmp)
		if err := copyTree(src, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, dst); err != nil {
			apppkg.RemoveTree(tmp)
			return nil, err
		}
	}
	if err := n.recordApp(ctx, m, dst); err != nil {
		return nil, err
	}
	return m, nil
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

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
