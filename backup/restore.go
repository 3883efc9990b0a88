package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"erg"
)

// Named is a destination with the name a user knows it by.
type Named struct {
	Name string
	Dest Destination
}

// Restorer reads snapshots from one or more destinations with the full
// keys: a chunk that is missing or damaged at one is taken from the next,
// and every such failure is kept in Problems, named.
type Restorer struct {
	keys     *Keys
	readers  []*namedReader
	Problems []string
	// Progress, if set, is told how far Write has come.
	Progress func(Progress)

	mu sync.Mutex // Problems, while chunks are read in parallel
}

// Progress is how far a snapshot's files have been written (a restore)
// or read (a backup) of the total.
type Progress struct {
	Files, FilesDone int
	Bytes, BytesDone int64
}

// readAhead is how many chunks a restore reads at once: a friend's node
// or a disk answers several requests faster than one after another.
const readAhead = 8

type namedReader struct {
	name string
	r    *reader
}

// NewRestorer opens each destination that holds this code's backups.
// It fails only when none does.
func NewRestorer(ctx context.Context, keys *Keys, dests []Named) (*Restorer, error) {
	res := &Restorer{keys: keys}
	var errs []error
	for _, d := range dests {
		r, err := newReader(ctx, d.Dest, keys)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			res.Problems = append(res.Problems, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		res.readers = append(res.readers, &namedReader{name: d.Name, r: r})
	}
	if len(res.readers) == 0 {
		for _, e := range errs {
			if errors.Is(e, ErrWrongCode) {
				return nil, ErrWrongCode
			}
		}
		return nil, fmt.Errorf("no backup to restore from: %s", joinErrs(errs))
	}
	return res, nil
}

// Snapshot is a snapshot header with the destinations that hold it.
type Snapshot struct {
	Header
	At []string `json:"at"`
}

// Snapshots lists the snapshots of every destination, oldest first; one
// held by several destinations is listed once.
func (r *Restorer) Snapshots(ctx context.Context) []Snapshot {
	byName := map[string]*Snapshot{}
	for _, nr := range r.readers {
		hs, bad, err := Headers(ctx, nr.r.d, &r.keys.NodeKeys)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %v", nr.name, err))
			continue
		}
		for _, e := range bad {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %v", nr.name, e))
		}
		for _, h := range hs {
			if s, ok := byName[h.Name]; ok {
				s.At = append(s.At, nr.name)
				continue
			}
			byName[h.Name] = &Snapshot{Header: h, At: []string{nr.name}}
		}
	}
	var out []Snapshot
	for _, s := range byName {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return a.Time.Compare(b.Time) })
	return out
}

// Tree reads a snapshot's tree from the first destination that has it whole.
func (r *Restorer) Tree(ctx context.Context, name string) (Header, Tree, error) {
	var errs []error
	for _, nr := range r.readers {
		h, t, err := nr.r.snapshot(ctx, name)
		if err == nil {
			return h, t, nil
		}
		if !errors.Is(err, ErrNotStored) {
			errs = append(errs, fmt.Errorf("%s: %w", nr.name, err))
		}
	}
	if len(errs) == 0 {
		return Header{}, Tree{}, fmt.Errorf("snapshot %s: %w", name, ErrNotStored)
	}
	r.Problems = append(r.Problems, joinErrs(errs))
	return Header{}, Tree{}, errors.New(joinErrs(errs))
}

func (r *Restorer) chunk(ctx context.Context, id string) ([]byte, error) {
	var errs []error
	for _, nr := range r.readers {
		b, err := nr.r.chunk(ctx, id)
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", nr.name, err))
		r.mu.Lock()
		r.Problems = append(r.Problems, fmt.Sprintf("%s: %v", nr.name, err))
		r.mu.Unlock()
	}
	return nil, errors.New(joinErrs(errs))
}

type fetched struct {
	b   []byte
	err error
}

// prefetch reads the chunks ids in order, up to readAhead at once: each
// is a channel that gives it, in the order of ids.
func (r *Restorer) prefetch(ctx context.Context, ids []string) <-chan chan fetched {
	futures := make(chan chan fetched, readAhead)
	go func() {
		defer close(futures)
		sem := make(chan struct{}, readAhead)
		for _, id := range ids {
			f := make(chan fetched, 1)
			select {
			case futures <- f:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				b, err := r.chunk(ctx, id)
				<-sem
				f <- fetched{b, err}
			}()
		}
	}()
	return futures
}

// Write puts a tree's files into roots (snapshot root name -> an empty
// directory that exists). Paths are checked to stay inside their root.
func (r *Restorer) Write(ctx context.Context, t Tree, roots map[string]string) (int64, error) {
	opened := map[string]*os.Root{}
	defer func() {
		for _, o := range opened {
			o.Close()
		}
	}()
	split := func(p string) (*os.Root, string, error) {
		name, rel, ok := strings.Cut(p, "/")
		if !ok || !filepath.IsLocal(rel) || path.Clean(rel) != rel || strings.Contains(rel, "\\") {
			return nil, "", fmt.Errorf("%w: unsafe path %q", ErrDamaged, p)
		}
		if o, ok := opened[name]; ok {
			return o, rel, nil
		}
		dir, ok := roots[name]
		if !ok {
			return nil, "", nil // a part of the snapshot not asked for
		}
		o, err := os.OpenRoot(dir)
		if err != nil {
			return nil, "", err
		}
		opened[name] = o
		return o, rel, nil
	}
	asRoot := os.Geteuid() == 0
	for _, d := range t.Dirs {
		root, rel, err := split(d.Path)
		if err != nil {
			return 0, err
		}
		if root == nil {
			continue
		}
		if err := root.MkdirAll(rel, 0o700); err != nil {
			return 0, err
		}
		if asRoot {
			if err := root.Lchown(rel, int(d.UID), int(d.GID)); err != nil {
				return 0, err
			}
		}
	}
	// The files asked for, and their chunks in order, read ahead.
	type wanted struct {
		f    *File
		root *os.Root
		rel  string
	}
	var files []wanted
	var ids []string
	var p Progress
	for i := range t.Files {
		f := &t.Files[i]
		root, rel, err := split(f.Path)
		if err != nil {
			return 0, err
		}
		if root != nil {
			files = append(files, wanted{f, root, rel})
			ids = append(ids, f.Chunks...)
			p.Files++
			p.Bytes += f.Size
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := r.prefetch(ctx, ids)
	report := func() {
		if r.Progress != nil {
			r.Progress(p)
		}
	}
	report()
	var total int64
	for _, w := range files {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		f, root, rel := w.f, w.root, w.rel
		if dir := path.Dir(rel); dir != "." {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return total, err
			}
		}
		mode := fs.FileMode(f.Mode) & 0o777
		if strings.HasPrefix(f.Path, "var/") {
			mode = mode&0o700 | 0o600 // a grain's own files: its uid is given them after
		}
		out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return total, fmt.Errorf("restore %s: %w", f.Path, err)
		}
		for range f.Chunks {
			c, ok := <-chunks
			if !ok {
				out.Close()
				return total, ctx.Err()
			}
			got := <-c
			if got.err != nil {
				out.Close()
				return total, fmt.Errorf("restore %s: %w", f.Path, got.err)
			}
			if _, err := out.Write(got.b); err != nil {
				out.Close()
				return total, err
			}
			total += int64(len(got.b))
			p.BytesDone += int64(len(got.b))
			report()
		}
		if err := out.Close(); err != nil {
			return total, err
		}
		if asRoot {
			if err := root.Lchown(rel, int(f.UID), int(f.GID)); err != nil {
				return total, err
			}
		}
		p.FilesDone++
		report()
	}
	return total, nil
}

// Latest restores the newest snapshot that match accepts and that can be
// read whole, trying older ones when a newer one is damaged everywhere.
// prepare gives fresh empty roots for each attempt and a function that
// discards them.
func (r *Restorer) Latest(ctx context.Context, match func(Header) bool, before func(Header) bool,
	prepare func() (map[string]string, func(), error)) (Header, Tree, error) {
	snaps := r.Snapshots(ctx)
	var errs []error
	for i := len(snaps) - 1; i >= 0; i-- {
		s := snaps[i]
		if !match(s.Header) || (before != nil && !before(s.Header)) {
			continue
		}
		h, t, err := r.Tree(ctx, s.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		roots, discard, err := prepare()
		if err != nil {
			return h, t, err
		}
		if _, err := r.Write(ctx, t, roots); err != nil {
			discard()
			errs = append(errs, fmt.Errorf("snapshot %s: %w", s.Name, err))
			continue
		}
		return h, t, nil
	}
	if len(errs) == 0 {
		return Header{}, Tree{}, fmt.Errorf("no backup of that: %w", ErrNotStored)
	}
	return Header{}, Tree{}, errors.New(joinErrs(errs))
}

// newestTree is the tree of the newest snapshot match accepts that opens.
func (r *Restorer) newestTree(ctx context.Context, match func(Header) bool) (Tree, error) {
	snaps := r.Snapshots(ctx)
	var errs []error
	for i := len(snaps) - 1; i >= 0; i-- {
		if !match(snaps[i].Header) {
			continue
		}
		_, t, err := r.Tree(ctx, snaps[i].Name)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return Tree{}, fmt.Errorf("%w: no backup of that grain", erg.ErrNotFound)
	}
	return Tree{}, errors.New(joinErrs(errs))
}
