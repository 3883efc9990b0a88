package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// configName is the one object of KindConfig: the repository's format and
// the fingerprint of the keys that made it.
const (
	configName    = "repo"
	formatVersion = 1
	maxHeader     = 16 << 20
)

type repoConfig struct {
	Format      int    `json:"format"`
	Fingerprint string `json:"fingerprint"`
}

// ErrWrongCode is returned when a repository was made with other keys.
var ErrWrongCode = errors.New("this backup was made with another recovery code")

// checkRepo makes sure d is a repository of these keys, making it one if
// it is empty.
func checkRepo(ctx context.Context, d Destination, k *NodeKeys, create bool) error {
	b, err := d.Get(ctx, KindConfig, configName)
	if errors.Is(err, ErrNotStored) {
		if !create {
			return fmt.Errorf("no erg backup is kept there")
		}
		b, _ = json.Marshal(repoConfig{Format: formatVersion, Fingerprint: k.Fingerprint})
		return d.Put(ctx, KindConfig, configName, b)
	}
	if err != nil {
		return err
	}
	var c repoConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("repository config: %w", ErrDamaged)
	}
	if c.Format != formatVersion {
		return fmt.Errorf("backup format %d is not one this erg reads", c.Format)
	}
	if c.Fingerprint != k.Fingerprint {
		return ErrWrongCode
	}
	return nil
}

// Header is the part of a snapshot the node can read with its own keys:
// what it is of, when, how big, and which chunks it needs (for retention
// and garbage collection). It names grains by id only.
type Header struct {
	Name   string        `json:"-"`
	Kind   string        `json:"kind"` // "grain" or "node"
	Grain  string        `json:"grain,omitempty"`
	Time   time.Time     `json:"time"`
	Size   int64         `json:"size"`
	Stored int64         `json:"-"` // bytes of the snapshot object itself
	Files  int           `json:"files"`
	Pause  time.Duration `json:"pause"`
	Key    string        `json:"key"`
	Refs   []string      `json:"refs"`
}

// Tree is the part only the recovery code opens: names, titles and the
// files with their chunks.
type Tree struct {
	Grain GrainMeta `json:"grain"`
	Dirs  []Folder  `json:"dirs"`
	Files []File    `json:"files"`
}

// GrainMeta is what a restore needs to make the grain again.
type GrainMeta struct {
	ID         string    `json:"id"`
	Owner      string    `json:"owner"` // account id
	AppID      string    `json:"appId"`
	AppName    string    `json:"appName"`
	AppVersion int64     `json:"appVersion"`
	Title      string    `json:"title"`
	Created    time.Time `json:"created"`
}

// Folder is one directory of a snapshot.
type Folder struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
}

// File is one regular file of a snapshot. Owners are kept as numbers, as
// tar does: a restore as root gives them back (a grain's files belong to
// its sandbox's uid).
type File struct {
	Path   string   `json:"path"`
	Mode   uint32   `json:"mode"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Size   int64    `json:"size"`
	MTime  int64    `json:"mtime"`
	Chunks []string `json:"chunks"`
}

func snapshotName(t time.Time) string {
	r := make([]byte, 6)
	rand.Read(r)
	return t.UTC().Format("20060102t150405") + "-" + hex.EncodeToString(r)
}

// encodeSnapshot is len(header) | header sealed with the index key | tree
// sealed with the run key.
func encodeSnapshot(k *NodeKeys, rk runKey, name string, h Header, t Tree) ([]byte, error) {
	hb, _ := json.Marshal(h)
	tb, _ := json.Marshal(t)
	sh, err := seal(k.Index, []byte("snapshot-header/"+name), hb)
	if err != nil {
		return nil, err
	}
	st, err := seal(rk.key, []byte("snapshot-tree/"+name), tb)
	if err != nil {
		return nil, err
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(sh)))
	return append(append(out, sh...), st...), nil
}

func splitSnapshot(name string, b []byte) (header, tree []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("snapshot %s: %w: truncated", name, ErrDamaged)
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxHeader || int(n) > len(b)-4 {
		return nil, nil, fmt.Errorf("snapshot %s: %w: truncated", name, ErrDamaged)
	}
	return b[4 : 4+n], b[4+n:], nil
}

func readHeader(k *NodeKeys, name string, b []byte) (Header, error) {
	sh, _, err := splitSnapshot(name, b)
	if err != nil {
		return Header{}, err
	}
	hb, err := open(k.Index, []byte("snapshot-header/"+name), sh)
	if err != nil {
		return Header{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	var h Header
	if err := json.Unmarshal(hb, &h); err != nil {
		return Header{}, fmt.Errorf("snapshot %s: %w", name, ErrDamaged)
	}
	h.Name = name
	h.Stored = int64(len(b))
	return h, nil
}

// Headers reads every snapshot header on d, oldest first. A snapshot that
// does not open is returned in bad, named, and left out.
func Headers(ctx context.Context, d Destination, k *NodeKeys) (hs []Header, bad []error, err error) {
	objs, err := d.List(ctx, KindSnapshots)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range objs {
		b, err := d.Get(ctx, KindSnapshots, o.Name)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		h, err := readHeader(k, o.Name, b)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b Header) int { return a.Time.Compare(b.Time) })
	return hs, bad, nil
}

// reader opens what a restore needs, with the full keys.
type reader struct {
	keys *Keys
	d    Destination
	mu   sync.Mutex // rks, for a restore's parallel chunk reads
	rks  map[string]runKey
}

func newReader(ctx context.Context, d Destination, k *Keys) (*reader, error) {
	if err := checkRepo(ctx, d, &k.NodeKeys, false); err != nil {
		return nil, err
	}
	return &reader{keys: k, d: d, rks: map[string]runKey{}}, nil
}

func (r *reader) runKey(ctx context.Context, id string) (runKey, error) {
	r.mu.Lock()
	rk, ok := r.rks[id]
	r.mu.Unlock()
	if ok {
		return rk, nil
	}
	if !isHex(id) {
		return runKey{}, fmt.Errorf("key %q: %w", id, ErrDamaged)
	}
	b, err := r.d.Get(ctx, KindKeys, id)
	if err != nil {
		return runKey{}, err
	}
	rk, err = r.keys.unwrap(id, b)
	if err != nil {
		return runKey{}, err
	}
	r.mu.Lock()
	r.rks[id] = rk
	r.mu.Unlock()
	return rk, nil
}

// snapshot reads a whole snapshot: its header and its tree.
func (r *reader) snapshot(ctx context.Context, name string) (Header, Tree, error) {
	b, err := r.d.Get(ctx, KindSnapshots, name)
	if err != nil {
		return Header{}, Tree{}, err
	}
	h, err := readHeader(&r.keys.NodeKeys, name, b)
	if err != nil {
		return h, Tree{}, err
	}
	_, st, _ := splitSnapshot(name, b)
	rk, err := r.runKey(ctx, h.Key)
	if err != nil {
		return h, Tree{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	tb, err := open(rk.key, []byte("snapshot-tree/"+name), st)
	if err != nil {
		return h, Tree{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	var t Tree
	if err := json.Unmarshal(tb, &t); err != nil {
		return h, Tree{}, fmt.Errorf("snapshot %s: %w", name, ErrDamaged)
	}
	return h, t, nil
}

// chunk reads one chunk and checks it is the one its name says.
func (r *reader) chunk(ctx context.Context, id string) ([]byte, error) {
	b, err := r.d.Get(ctx, KindChunks, id)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("chunk %s: %w: truncated", id, ErrDamaged)
	}
	rk, err := r.runKey(ctx, hex.EncodeToString(b[:16]))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	plain, err := open(rk.key, []byte("chunks/"+id), b[16:])
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if r.keys.ChunkID(plain) != id {
		return nil, fmt.Errorf("chunk %s: %w: content does not match its name", id, ErrDamaged)
	}
	return plain, nil
}

func sealChunk(rk runKey, id string, plain []byte) ([]byte, error) {
	kid, _ := hex.DecodeString(rk.id)
	sealed, err := seal(rk.key, []byte("chunks/"+id), plain)
	if err != nil {
		return nil, err
	}
	return append(kid, sealed...), nil
}

// joinErrs is a readable one-line join.
func joinErrs(errs []error) string {
	var b bytes.Buffer
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return strings.TrimSpace(b.String())
}
