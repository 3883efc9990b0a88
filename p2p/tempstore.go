package p2p

import (
	"context"
	"errors"
	"os"
	"sync"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// TempStore is a blockstore in one unlinked scratch file, for a fetch that
// is not yet trusted: blocks land in it at the speed of sequential writes
// (one file per block costs far more on most disks), and closing it leaves
// nothing behind, whatever happened. Keep what passed checks with CopyTo.
type TempStore struct {
	mu    sync.RWMutex
	f     *os.File
	off   int64
	spans map[string][2]int64 // multihash -> offset, size
	order []cid.Cid
}

var _ blockstore.Blockstore = (*TempStore)(nil)

// NewTempStore makes a TempStore in dir (os.TempDir if empty).
func NewTempStore(dir string) (*TempStore, error) {
	f, err := os.CreateTemp(dir, "erg-fetch-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return &TempStore{f: f, spans: map[string][2]int64{}}, nil
}

// Close drops every block.
func (t *TempStore) Close() error { return t.f.Close() }

// CopyTo puts every block into bs, in the order they arrived.
func (t *TempStore) CopyTo(ctx context.Context, bs blockstore.Blockstore) error {
	t.mu.RLock()
	order := append([]cid.Cid{}, t.order...)
	t.mu.RUnlock()
	var batch []blocks.Block
	for _, c := range order {
		b, err := t.Get(ctx, c)
		if err != nil {
			return err
		}
		if batch = append(batch, b); len(batch) == 64 {
			if err := bs.PutMany(ctx, batch); err != nil {
				return err
			}
			batch = nil
		}
	}
	return bs.PutMany(ctx, batch)
}

func (t *TempStore) Put(ctx context.Context, b blocks.Block) error {
	return t.PutMany(ctx, []blocks.Block{b})
}

func (t *TempStore) PutMany(_ context.Context, bs []blocks.Block) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range bs {
		k := string(b.Cid().Hash())
		if _, ok := t.spans[k]; ok {
			continue
		}
		data := b.RawData()
		if _, err := t.f.WriteAt(data, t.off); err != nil {
			return err
		}
		t.spans[k] = [2]int64{t.off, int64(len(data))}
		t.order = append(t.order, b.Cid())
		t.off += int64(len(data))
	}
	return nil
}

func (t *TempStore) span(c cid.Cid) ([2]int64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	sp, ok := t.spans[string(c.Hash())]
	return sp, ok
}

func (t *TempStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, ok := t.span(c)
	return ok, nil
}

func (t *TempStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	sp, ok := t.span(c)
	if !ok {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	return int(sp[1]), nil
}

// Get returns a block; its bytes were checked against its CID on the way
// in by whoever fetched it, and are checked again here, since the scratch
// file is only as trustworthy as the disk.
func (t *TempStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	sp, ok := t.span(c)
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data := make([]byte, sp[1])
	if _, err := t.f.ReadAt(data, sp[0]); err != nil {
		return nil, err
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, err
	}
	return b, verify(b)
}

func (t *TempStore) DeleteBlock(_ context.Context, c cid.Cid) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.spans, string(c.Hash()))
	return nil
}

func (t *TempStore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	return nil, errors.ErrUnsupported
}

// overlay reads from the node's store first, so blocks already held are
// not fetched again, and writes to the scratch store.
type overlay struct {
	blockstore.Blockstore // the scratch store, which takes writes
	main                  blockstore.Blockstore
}

func (o overlay) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if ok, err := o.main.Has(ctx, c); ok || err != nil {
		return ok, err
	}
	return o.Blockstore.Has(ctx, c)
}

func (o overlay) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if b, err := o.main.Get(ctx, c); err == nil {
		return b, nil
	}
	return o.Blockstore.Get(ctx, c)
}

func (o overlay) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	if n, err := o.main.GetSize(ctx, c); err == nil {
		return n, nil
	}
	return o.Blockstore.GetSize(ctx, c)
}
