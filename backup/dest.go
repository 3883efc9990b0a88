package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The kinds of object a repository holds. Names are lowercase hex (and,
// for snapshots, a date before it), so a destination can check them
// without knowing what they are.
const (
	KindConfig    = "config"
	KindKeys      = "keys"
	KindChunks    = "chunks"
	KindSnapshots = "snapshots"
)

var (
	kinds     = map[string]bool{KindConfig: true, KindKeys: true, KindChunks: true, KindSnapshots: true}
	validName = regexp.MustCompile(`^[0-9a-z-]{1,80}$`)
)

// CheckName refuses a kind or object name a destination must not store.
func CheckName(kind, name string) error {
	if !kinds[kind] || !validName.MatchString(name) {
		return fmt.Errorf("bad object name %s/%q", kind, name)
	}
	return nil
}

// Object is an entry in a destination's listing.
type Object struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// ErrNotStored is wrapped when a destination has no such object.
var ErrNotStored = errors.New("not stored")

// Destination is where a repository's objects are kept: a directory, or
// a friend's node. Put must make an object visible whole or not at all;
// an object never changes once put (names are content MACs or unique).
type Destination interface {
	Put(ctx context.Context, kind, name string, data []byte) error
	Get(ctx context.Context, kind, name string) ([]byte, error)
	List(ctx context.Context, kind string) ([]Object, error)
	Delete(ctx context.Context, kind, name string) error
}

// Dir is a destination in a local directory (a USB disk, another
// filesystem). Objects are written to tmp/ and renamed into place after
// fsync, so a crash leaves nothing under a real name that is not whole.
type Dir struct {
	root string
}

// staleTemp is how old a file in a directory destination's tmp must be
// before it counts as left by a killed run; a chunk is written in far less.
const staleTemp = time.Hour

// OpenDir opens (making it if needed) a directory destination and clears
// what a crashed writer left in its tmp/ (once older than staleTemp).
func OpenDir(root string) (*Dir, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("backup directory %q must be an absolute path", root)
	}
	for _, d := range []string{"", "tmp", KindConfig, KindKeys, KindChunks, KindSnapshots} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("backup directory: %w", err)
		}
	}
	// What a killed run left in tmp goes, but only once it is old: the
	// directory is opened again while a run writes (the status page, a
	// second destination list), and its files in flight must stay.
	ents, _ := os.ReadDir(filepath.Join(root, "tmp"))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(filepath.Join(root, "tmp", e.Name()))
		}
	}
	return &Dir{root: root}, nil
}

// Root is the directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(kind, name string) string {
	if kind == KindChunks {
		// Fan chunks out so no directory holds millions of entries.
		return filepath.Join(d.root, kind, name[:2], name)
	}
	return filepath.Join(d.root, kind, name)
}

// Put writes an object atomically.
func (d *Dir) Put(ctx context.Context, kind, name string, data []byte) error {
	if err := CheckName(kind, name); err != nil {
		return err
	}
	p := d.path(kind, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "put-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Get reads an object.
func (d *Dir) Get(ctx context.Context, kind, name string) ([]byte, error) {
	if err := CheckName(kind, name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.path(kind, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s/%s: %w", kind, name, ErrNotStored)
	}
	return b, err
}

// List lists a kind's objects.
func (d *Dir) List(ctx context.Context, kind string) ([]Object, error) {
	if !kinds[kind] {
		return nil, fmt.Errorf("bad kind %q", kind)
	}
	var out []Object
	err := filepath.WalkDir(filepath.Join(d.root, kind), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() || !validName.MatchString(e.Name()) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		out = append(out, Object{Name: e.Name(), Size: fi.Size(), Modified: fi.ModTime().UTC()})
		return nil
	})
	return out, err
}

// Delete removes an object; removing one that is not there is no error.
func (d *Dir) Delete(ctx context.Context, kind, name string) error {
	if err := CheckName(kind, name); err != nil {
		return err
	}
	err := os.Remove(d.path(kind, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Usage is the bytes a directory's objects take.
func Usage(ctx context.Context, d Destination) (int64, error) {
	var n int64
	for k := range kinds {
		objs, err := d.List(ctx, k)
		if err != nil {
			return 0, err
		}
		for _, o := range objs {
			n += o.Size
		}
	}
	return n, nil
}

func isHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}
