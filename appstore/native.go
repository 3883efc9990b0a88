package appstore

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// PrepareTree makes the tree that Pack should sign for the app in dir: when
// the manifest lists host paths to include, or an ELF program in the tree
// needs shared libraries the tree lacks, it copies dir into a new directory
// under tmpDir and adds those files (and, recursively, the loader and
// libraries of every ELF file among them) at their host paths. Otherwise it
// returns dir itself. cleanup removes whatever PrepareTree made.
func PrepareTree(dir, tmpDir string) (tree string, cleanup func(), err error) {
	m, err := ReadManifest(dir)
	if err != nil {
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
	if len(m.Include) == 0 && len(missing) == 0 {
		return dir, nothing, nil
	}
	stage, err := os.MkdirTemp(tmpDir, "erg-pack-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { RemoveTree(stage) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if err := os.CopyFS(stage, os.DirFS(dir)); err != nil {
		return "", nil, fmt.Errorf("copy %s: %w", dir, err)
	}
	var hostFiles []string
	for _, inc := range m.Include {
		err := filepath.WalkDir(inc, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				hostFiles = append(hostFiles, p)
			}
			return nil
		})
		if err != nil {
			return "", nil, fmt.Errorf("include %s: %w", inc, err)
		}
	}
	if err := CopyHostFiles(stage, hostFiles); err != nil {
		return "", nil, err
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
	return stage, cleanup, nil
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
