package apppkg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FilesListFile is the file beside the manifest that lists, one absolute
// host path a line, the host files an app needs: `erg app dev` writes it
// from what the app used, and PrepareTree copies exactly those in.
const FilesListFile = "erg-files.list"

// DevDir is the directory `erg app dev` keeps its scratch /var in, inside
// the app dir; it never goes into a package.
const DevDir = ".erg-dev"

// PrepareTree makes the tree that Pack should sign for the app in dir: when
// the manifest lists host paths to include, dir holds a file list
// (FilesListFile), or an ELF program in the tree needs shared libraries the
// tree lacks, it copies dir (without DevDir) into a new directory under
// tmpDir and adds those files (and, recursively, the loader and libraries
// of every ELF file among them) at their host paths. Otherwise it returns
// dir itself. cleanup removes whatever PrepareTree made.
//
// The file list is copied exactly: each regular file, each directory (as
// an empty directory; its listed contents come with their own lines), and
// each symlink as a symlink when its target is relative and stays in the
// tree, the target following it in turn, else as a copy of what it points
// to. A listed path missing from the host, or a file that not everyone may
// read (which would publish a private file), is an error.
func PrepareTree(dir, tmpDir string) (tree string, cleanup func(), err error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return "", nil, err
	}
	listed, err := ReadFilesList(filepath.Join(dir, FilesListFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	nothing := func() {}
	bins, err := elfFiles(dir)
	if err != nil {
		return "", nil, err
	}
	missing, err := CollectELFDeps(dir, bins)
	if err != nil {
		return "", nil, err
	}
	_, devErr := os.Lstat(filepath.Join(dir, DevDir))
	if len(m.Include) == 0 && len(missing) == 0 && len(listed) == 0 && devErr != nil {
		return dir, nothing, nil
	}
	stage, err := os.MkdirTemp(tmpDir, "erg-pack-")
	if err != nil {
		return "", nil, err
	}
	remove := func() { RemoveTree(stage) }
	defer func() {
		if err != nil {
			remove() // not cleanup: an error return has set it to nil
		}
	}()
	if err := copyAppDir(stage, dir); err != nil {
		return "", nil, err
	}
	if err := copyListed(stage, listed); err != nil {
		return "", nil, fmt.Errorf("%s: %w", FilesListFile, err)
	}
	// An included tree is copied as a listed one is, links kept: a host
	// tree may link to its own dirs (zoneinfo's posix/Africa -> ../Africa).
	var included []string
	for _, inc := range m.Include {
		err := filepath.WalkDir(inc, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				included = append(included, p)
			}
			return nil
		})
		if err != nil {
			return "", nil, fmt.Errorf("include %s: %w", inc, err)
		}
	}
	if err := copyListed(stage, included); err != nil {
		return "", nil, fmt.Errorf("include: %w", err)
	}
	if bins, err = elfFiles(stage); err != nil {
		return "", nil, err
	}
	if missing, err = CollectELFDeps(stage, bins); err != nil {
		return "", nil, err
	}
	if err := CopyHostFiles(stage, missing); err != nil {
		return "", nil, err
	}
	return stage, remove, nil
}

// elfFiles lists, as paths inside the tree, the regular files under root
// that start with the ELF magic.
func elfFiles(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		magic := make([]byte, 4)
		n, _ := f.Read(magic)
		f.Close()
		if n == 4 && bytes.Equal(magic, []byte("\x7fELF")) {
			rel, _ := filepath.Rel(root, p)
			out = append(out, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	return out, err
}

// copyAppDir copies the app dir into stage, leaving out DevDir.
func copyAppDir(stage, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == DevDir {
			continue
		}
		src, dst := filepath.Join(dir, e.Name()), filepath.Join(stage, e.Name())
		if e.IsDir() {
			err = os.CopyFS(dst, os.DirFS(src))
		} else {
			err = copyFile(src, dst)
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	return nil
}

// copyListed copies the listed host paths into stage (see PrepareTree).
func copyListed(stage string, paths []string) error {
	queue := append([]string(nil), paths...)
	done := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if done[p] {
			continue
		}
		done[p] = true
		dst := filepath.Join(stage, filepath.FromSlash(p))
		if _, err := os.Lstat(dst); err == nil {
			continue // the app's own file, or already copied
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("%s is not on this host any more: run 'erg app dev' again or remove the line (%w)", p, err)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel := path.Join(path.Dir(strings.TrimPrefix(p, "/")), target)
			if path.IsAbs(target) || rel == ".." || strings.HasPrefix(rel, "../") {
				// Pack allows only links inside the tree: copy what it points to.
				st, err := os.Stat(p)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				if st.IsDir() {
					err = os.MkdirAll(dst, 0o755)
				} else {
					err = copyReadable(p, dst, st)
				}
				if err != nil {
					return err
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			queue = append(queue, "/"+rel)
		case fi.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyReadable(p, dst, fi); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is a %v; a package holds only files, directories and symlinks", p, fi.Mode().Type())
		}
	}
	return nil
}

// copyReadable copies a host file that everyone may read.
func copyReadable(src, dst string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("%s is not readable by everyone; packing it would publish a private file (remove the line)", src)
	}
	if err := copyFile(src, dst); err != nil {
		return fmt.Errorf("copy %s into the package: %w", src, err)
	}
	return nil
}

// ReadFilesList reads a file list: one clean absolute path a line; blank
// lines and lines starting with # are ignored. The error names the first
// bad line.
func ReadFilesList(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !path.IsAbs(line) || path.Clean(line) != line || line == "/" {
			return nil, fmt.Errorf("%s:%d: %q is not a clean absolute path other than /", name, n, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

// WriteFilesList replaces the file list at name with paths, atomically.
func WriteFilesList(name string, paths []string) error {
	var b bytes.Buffer
	b.WriteString("# Host files this app uses, written by 'erg app dev'; 'erg app pack' copies them in.\n")
	for _, p := range paths {
		if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\n\r") {
			return fmt.Errorf("file list: %q is not a clean absolute path", p)
		}
		b.WriteString(p)
		b.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".erg-files-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
