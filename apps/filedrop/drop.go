package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// filesDir is the directory inside the grain's data directory that
	// holds the uploaded files, under the names they were uploaded with.
	filesDir = "files"
	// tempPrefix names the files an upload streams into, in the data
	// directory, before they are renamed into filesDir; any left over were
	// abandoned by a crash mid-upload.
	tempPrefix = ".upload-"
	// maxName bounds a file name, in bytes, as most file systems do.
	maxName = 255
)

// errBadName explains which names a file may have.
var errBadName = errors.New("a file name must be 1 to 255 bytes of UTF-8 without /, \\, .., NUL or control characters")

// A file is one file in the drop box, as listed.
type file struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// A drop is the drop box on disk.
type drop struct {
	dir   string   // the data directory
	files *os.Root // dir/files; names are resolved only inside it
}

// openDrop opens the drop box in dir, creating it if need be, and removes
// uploads that a crash left unfinished.
func openDrop(dir string) (*drop, error) {
	if err := os.MkdirAll(filepath.Join(dir, filesDir), 0o755); err != nil {
		return nil, err
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, name := range leftovers {
		if err := os.Remove(name); err != nil {
			return nil, fmt.Errorf("remove unfinished upload: %w", err)
		}
	}
	root, err := os.OpenRoot(filepath.Join(dir, filesDir))
	if err != nil {
		return nil, err
	}
	return &drop{dir: dir, files: root}, nil
}

func (d *drop) close() error { return d.files.Close() }

// checkName returns errBadName unless name is safe to store and serve as a
// single file name.
func checkName(name string) error {
	switch {
	case name == "", len(name) > maxName, !utf8.ValidString(name),
		strings.ContainsAny(name, `/\`), strings.Contains(name, ".."),
		name == ".", strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errBadName
	}
	return nil
}

// list returns the files, sorted by name.
func (d *drop) list() ([]file, error) {
	f, err := d.files.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := []file{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, file{Name: e.Name(), Size: info.Size(), ModTime: info.ModTime().UTC()})
	}
	slices.SortFunc(out, func(a, b file) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// open opens the file called name for reading. It returns an error that
// matches fs.ErrNotExist if there is no such file.
func (d *drop) open(name string) (*os.File, fs.FileInfo, error) {
	if checkName(name) != nil {
		return nil, nil, fs.ErrNotExist
	}
	f, err := d.files.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, info, nil
}

// remove deletes the file called name. It returns an error that matches
// fs.ErrNotExist if there is no such file.
func (d *drop) remove(name string) error {
	if checkName(name) != nil {
		return fs.ErrNotExist
	}
	// Only what an upload can make is deleted: not directories or links.
	if info, err := d.files.Lstat(name); err != nil || !info.Mode().IsRegular() {
		return fs.ErrNotExist
	}
	if err := d.files.Remove(name); err != nil {
		return err
	}
	return d.syncDir(filesDir)
}

// An upload is a file being received: its data goes to a temporary file
// in the data directory until commit renames it into place.
type upload struct {
	name string
	f    *os.File
	done bool
}

// create starts receiving a file called name, which must have passed
// checkName.
func (d *drop) create(name string) (*upload, error) {
	f, err := os.CreateTemp(d.dir, tempPrefix+"*")
	if err != nil {
		return nil, err
	}
	return &upload{name: name, f: f}, nil
}

// finish syncs and closes the temporary file.
func (u *upload) finish() error {
	if err := u.f.Sync(); err != nil {
		return err
	}
	return u.f.Close()
}

// discard abandons the upload unless it was committed.
func (u *upload) discard() {
	if !u.done {
		u.f.Close()
		os.Remove(u.f.Name())
	}
}

// commit moves finished uploads into place, replacing any files of the same
// names, and makes the renames durable.
func (d *drop) commit(ups []*upload) error {
	for _, u := range ups {
		if err := os.Rename(u.f.Name(), filepath.Join(d.dir, filesDir, u.name)); err != nil {
			return err
		}
		u.done = true
	}
	return errors.Join(d.syncDir(filesDir), d.syncDir("."))
}

func (d *drop) syncDir(name string) error {
	f, err := os.Open(filepath.Join(d.dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// errReader remembers the error its reader returned, so that a failed copy
// can tell a broken request from a failed disk.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
