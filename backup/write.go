package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/restic/chunker"
)

// Target is one destination a run writes to, with what the run learnt
// about it.
type Target struct {
	Name string
	Dest Destination

	have    map[string]bool // chunks it holds
	keyPut  bool
	Err     error // the first failure; the target is skipped after it
	Written int64 // bytes put this run
}

// Source is what one snapshot is taken of: directories under names
// ("var" for a grain, "db" and "packages" for the node).
type Source struct {
	Kind  string // "grain" or "node"
	Grain GrainMeta
	Roots map[string]string // name in the snapshot -> directory
	// Freeze, if set, pauses whatever writes the roots while they are
	// copied; it returns the function that resumes it.
	Freeze func() (thaw func(), err error)
}

// Run writes snapshots of sources to targets with one run key.
type Run struct {
	keys    *NodeKeys
	rk      runKey
	targets []*Target
	cache   *fileCache
	staging string
	// Progress, if set, is told how far a snapshot has come: the files
	// that changed (copied while frozen) as they are chunked and sent.
	Progress func(Progress)
}

// NewRun starts a run: it checks each target is this node's repository
// (making it one if empty) and lists the chunks it holds. A target that
// fails is marked and skipped; the run goes on with the others.
func NewRun(ctx context.Context, keys *NodeKeys, targets []*Target, cacheFile, staging string) *Run {
	r := &Run{keys: keys, rk: newRunKey(), targets: targets, cache: loadCache(cacheFile), staging: staging}
	for _, t := range targets {
		if t.Err != nil {
			continue // not opened (a disk unplugged): nothing to ask
		}
		if err := checkRepo(ctx, t.Dest, keys, true); err != nil {
			if errors.Is(err, ErrWrongCode) {
				// A new code was made: what is there stays as it is,
				// readable with the old code, and nothing new goes there.
				err = fmt.Errorf("%w; they stay there, readable with that code: back up with this node's code to another destination (or empty this one)", err)
			}
			t.Err = err
			continue
		}
		objs, err := t.Dest.List(ctx, KindChunks)
		if err != nil {
			t.Err = err
			continue
		}
		t.have = make(map[string]bool, len(objs))
		for _, o := range objs {
			t.have[o.Name] = true
		}
	}
	return r
}

func (r *Run) live() []*Target {
	var out []*Target
	for _, t := range r.targets {
		if t.Err == nil {
			out = append(out, t)
		}
	}
	return out
}

func (r *Run) put(ctx context.Context, t *Target, kind, name string, data []byte) {
	if t.Err != nil {
		return
	}
	if err := t.Dest.Put(ctx, kind, name, data); err != nil {
		t.Err = err
		return
	}
	t.Written += int64(len(data))
}

// ensureKey puts the wrapped run key on a target before anything it
// encrypts.
func (r *Run) ensureKey(ctx context.Context, t *Target) {
	if t.keyPut || t.Err != nil {
		return
	}
	w, err := r.keys.wrap(r.rk)
	if err != nil {
		t.Err = err
		return
	}
	r.put(ctx, t, KindKeys, r.rk.id, w)
	t.keyPut = t.Err == nil
}

func (r *Run) putChunk(ctx context.Context, id string, plain []byte) error {
	var sealed []byte
	for _, t := range r.live() {
		if t.have[id] {
			continue
		}
		r.ensureKey(ctx, t)
		if sealed == nil {
			var err error
			if sealed, err = sealChunk(r.rk, id, plain); err != nil {
				return err
			}
		}
		r.put(ctx, t, KindChunks, id, sealed)
		if t.Err == nil {
			t.have[id] = true
		}
	}
	return ctx.Err()
}

// haveEverywhere says whether every live target holds every chunk.
func (r *Run) haveEverywhere(ids []string) bool {
	for _, t := range r.live() {
		for _, id := range ids {
			if !t.have[id] {
				return false
			}
		}
	}
	return true
}

// Result is what Snapshot did.
type Result struct {
	Name  string
	Size  int64
	Files int
	Pause time.Duration
	New   int64 // bytes read from files that changed since the last run
}

// Snapshot takes one snapshot of src and writes it to every live target.
// The source is frozen only while the files that changed since the last
// run are copied to the staging dir; chunking, encryption and sending
// happen after it runs again. The snapshot object is put last, after
// every chunk it names, so a run cut short leaves only unreferenced
// chunks, never a snapshot missing data.
func (r *Run) Snapshot(ctx context.Context, src Source) (Result, error) {
	if len(r.live()) == 0 {
		return Result{}, errors.New("no destination is usable")
	}
	cacheKey := src.Kind + ":" + src.Grain.ID
	old := r.cache.Files[cacheKey]
	stage, err := os.MkdirTemp(r.staging, "snap-*")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(stage)

	var tree Tree
	tree.Grain = src.Grain
	type pending struct {
		i     int // in tree.Files
		local string
	}
	inos := map[string]uint64{}
	var todo []pending
	var res Result
	pauseStart := time.Now()
	thaw := func() {}
	if src.Freeze != nil {
		if thaw, err = src.Freeze(); err != nil {
			return Result{}, fmt.Errorf("pause: %w", err)
		}
	}
	names := make([]string, 0, len(src.Roots))
	for n := range src.Roots {
		names = append(names, n)
	}
	sort.Strings(names)
	n := 0
	for _, rootName := range names {
		err = walkRoot(src.Roots[rootName], func(rel string, d fs.DirEntry, fi fs.FileInfo, open func() (*os.File, error)) error {
			p := path.Join(rootName, rel)
			st, _ := fi.Sys().(*syscall.Stat_t)
			var ino uint64
			var uid, gid uint32
			if st != nil {
				ino, uid, gid = st.Ino, st.Uid, st.Gid
			}
			if d.IsDir() {
				tree.Dirs = append(tree.Dirs, Folder{Path: p, Mode: uint32(fi.Mode().Perm()), UID: uid, GID: gid})
				return nil
			}
			inos[p] = ino
			f := &File{Path: p, Mode: uint32(fi.Mode().Perm()), UID: uid, GID: gid, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
			if c, ok := old[p]; ok && c.Size == f.Size && c.MTime == f.MTime && c.Ino == ino && r.haveEverywhere(c.Chunks) {
				f.Chunks = c.Chunks
				tree.Files = append(tree.Files, *f)
				return nil
			}
			in, err := open()
			if err != nil {
				return nil // gone, or swapped for something not a file
			}
			defer in.Close()
			n++
			local := filepath.Join(stage, fmt.Sprint(n))
			out, err := os.Create(local)
			if err != nil {
				return err
			}
			k, err := io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			f.Size = k
			res.New += k
			tree.Files = append(tree.Files, *f)
			todo = append(todo, pending{i: len(tree.Files) - 1, local: local})
			return nil
		})
		if err != nil {
			break
		}
	}
	thaw()
	res.Pause = time.Since(pauseStart)
	if err != nil {
		return Result{}, err
	}
	buf := make([]byte, chunker.MaxSize)
	prog := Progress{Files: len(todo), Bytes: res.New}
	report := func(n int) {
		prog.BytesDone += int64(n)
		if r.Progress != nil {
			r.Progress(prog)
		}
	}
	report(0)
	for _, p := range todo {
		f := &tree.Files[p.i]
		ids, err := r.chunkFile(ctx, p.local, buf, report)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", f.Path, err)
		}
		f.Chunks = ids
		prog.FilesDone++
		report(0)
	}
	h := Header{Kind: src.Kind, Grain: src.Grain.ID, Time: time.Now().UTC(), Files: len(tree.Files), Pause: res.Pause, Key: r.rk.id}
	seen := map[string]bool{}
	entries := map[string]cachedFile{}
	for _, f := range tree.Files {
		h.Size += f.Size
		for _, c := range f.Chunks {
			if !seen[c] {
				seen[c] = true
				h.Refs = append(h.Refs, c)
			}
		}
	}
	res.Name = snapshotName(h.Time)
	body, err := encodeSnapshot(r.keys, r.rk, res.Name, h, tree)
	if err != nil {
		return Result{}, err
	}
	for _, t := range r.live() {
		r.ensureKey(ctx, t)
		r.put(ctx, t, KindSnapshots, res.Name, body)
	}
	if len(r.live()) == 0 {
		return Result{}, errors.New("every destination failed")
	}
	// Remember files by identity for the next run (inode, size, mtime).
	for _, f := range tree.Files {
		entries[f.Path] = cachedFile{Size: f.Size, MTime: f.MTime, Ino: inos[f.Path], Chunks: f.Chunks}
	}
	r.cache.Files[cacheKey] = entries
	res.Size, res.Files = h.Size, h.Files
	return res, nil
}

func (r *Run) chunkFile(ctx context.Context, local string, buf []byte, sent func(int)) ([]string, error) {
	f, err := os.Open(local)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ch := chunker.New(f, r.keys.Pol)
	var ids []string
	for {
		c, err := ch.Next(buf)
		if err == io.EOF {
			return ids, nil
		}
		if err != nil {
			return nil, err
		}
		id := r.keys.ChunkID(c.Data)
		if err := r.putChunk(ctx, id, c.Data); err != nil {
			return nil, err
		}
		ids = append(ids, id)
		sent(len(c.Data))
	}
}

// SaveCache writes the file cache after a run.
func (r *Run) SaveCache() error { return r.cache.save() }

// Targets is the run's targets with their outcomes.
func (r *Run) Targets() []*Target { return r.targets }

// walkRoot walks dir through an os.Root (a grain may have planted
// symlinks: nothing outside dir is reached) calling fn for dirs and
// regular files; open opens a file without following links or blocking
// on fifos.
func walkRoot(dir string, fn func(rel string, d fs.DirEntry, fi fs.FileInfo, open func() (*os.File, error)) error) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil // links, sockets, fifos: not data a restore could trust
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		return fn(p, d, fi, func() (*os.File, error) {
			f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
			if err != nil {
				return nil, err
			}
			if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
				f.Close()
				return nil, fs.ErrInvalid
			}
			return f, nil
		})
	})
}
