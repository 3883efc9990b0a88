package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multicodec"
)

// DAGProtocol streams a whole DAG from one provider: the asker sends the
// root CID in a frame; the server answers with one frame per block (CID
// bytes then block bytes), parents before children, and an empty frame at
// the end. The asker checks every block against a CID it already expects
// from the blocks before, so a peer can only send the DAG that was asked
// for. One stream carries the DAG at close to the raw stream's speed, where
// bitswap's want/have round trips cost it most of that.
const DAGProtocol = "/erg/dag/1.0.0"

// maxBlock bounds one block on the DAG stream and so one frame.
const maxBlock = 2 << 20

// FetchOptions tune Fetch.
type FetchOptions struct {
	// MaxBytes bounds the DAG's total block bytes; zero means no bound.
	MaxBytes int64
	// Stall is how long a peer may send nothing before it is dropped;
	// zero means 15s.
	Stall time.Duration
	// Progress, if set, is called now and then, and once at the end.
	Progress func(FetchProgress)
	// NoStream skips the DAG stream and fetches over bitswap only.
	NoStream bool
	// Into, if set, takes the fetched blocks instead of the node's
	// blockstore (blocks the node holds already are read from it).
	Into *TempStore
}

// FetchProgress reports a fetch under way.
type FetchProgress struct {
	Bytes   int64         // block bytes received
	Blocks  int           // blocks received
	Peers   int           // providers found
	Elapsed time.Duration // since the fetch began
}

// Rate is the average bytes per second so far.
func (p FetchProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Elapsed.Seconds()
}

// Fetched lists the blocks a fetch added to the blockstore, so a caller
// that rejects what it fetched can take them out again.
type Fetched struct {
	bs    blockstore.Blockstore
	mu    sync.Mutex
	added []cid.Cid
	bytes atomic.Int64
	n     atomic.Int64
}

// Discard deletes the blocks the fetch added. It is safe on nil.
func (f *Fetched) Discard(ctx context.Context) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, c := range f.added {
		if err := f.bs.DeleteBlock(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	f.added = nil
	return errors.Join(errs...)
}

// recordingStore is the blockstore a fetch writes through: it notes each
// block that was new, for Discard.
type recordingStore struct {
	blockstore.Blockstore
	f *Fetched
}

func (r recordingStore) Put(ctx context.Context, b blocks.Block) error {
	return r.PutMany(ctx, []blocks.Block{b})
}

func (r recordingStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	var fresh []blocks.Block
	for _, b := range bs {
		if has, err := r.Blockstore.Has(ctx, b.Cid()); err != nil {
			return err
		} else if !has {
			fresh = append(fresh, b)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := r.Blockstore.PutMany(ctx, fresh); err != nil {
		return err
	}
	r.f.mu.Lock()
	for _, b := range fresh {
		r.f.added = append(r.f.added, b.Cid())
		r.f.bytes.Add(int64(len(b.RawData())))
		r.f.n.Add(1)
	}
	r.f.mu.Unlock()
	return nil
}

// Fetch brings every block of the DAG under root into the blockstore. It
// asks providers for the whole DAG over DAGProtocol first, one after the
// other, and fetches whatever is still missing over bitswap. On error the
// blocks it added stay until the caller discards them.
func (x *Host) Fetch(ctx context.Context, root cid.Cid, opts FetchOptions) (*Fetched, error) {
	if opts.Stall <= 0 {
		opts.Stall = 15 * time.Second
	}
	var base blockstore.Blockstore = x.bs
	if opts.Into != nil {
		base = overlay{Blockstore: opts.Into, main: x.bs}
	}
	f := &Fetched{bs: base}
	start := time.Now()
	var peers atomic.Int64
	var reportMu sync.Mutex // Progress is never called twice at once
	report := func() {
		if opts.Progress != nil {
			reportMu.Lock()
			defer reportMu.Unlock()
			opts.Progress(FetchProgress{Bytes: f.bytes.Load(), Blocks: int(f.n.Load()), Peers: int(peers.Load()), Elapsed: time.Since(start)})
		}
	}
	stopTicker, tickerDone := make(chan struct{}), make(chan struct{})
	// Progress is never called after Fetch returns.
	defer func() {
		close(stopTicker)
		<-tickerDone
	}()
	go func() {
		defer close(tickerDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report()
			case <-stopTicker:
				return
			}
		}
	}()
	store := recordingStore{Blockstore: base, f: f}
	// What went wrong with each provider's stream is part of the error if
	// bitswap cannot finish the job either.
	var streamErrs []error

	if !opts.NoStream {
		if has, _ := base.Has(ctx, root); !has {
			provs := x.FindProviders(ctx, root, 8)
			peers.Store(int64(len(provs)))
			for _, p := range provs {
				err := x.fetchStream(ctx, p, root, store, opts)
				if err == nil {
					// Every block arrived and each link was checked on
					// the way: the DAG is complete.
					report()
					return f, nil
				}
				if ctx.Err() != nil {
					return f, ctx.Err()
				}
				x.log.Warn("dag stream failed; trying the next provider", "peer", p.ID, "root", root, "err", err)
				streamErrs = append(streamErrs, fmt.Errorf("peer %s: %w", p.ID, err))
			}
		}
	}

	// Bitswap fills any gap, from any provider; blocks already here are
	// read locally.
	bsvc := blockservice.New(store, x.bswap)
	dag := merkledag.NewDAGService(bsvc)
	var size atomic.Int64
	visit := merkledag.OnError(func(c cid.Cid, err error) error { return err })
	// Bitswap itself waits as long as the context lets it; a watchdog
	// gives up when no block arrives for opts.Stall.
	wctx, wcancel := context.WithCancelCause(ctx)
	defer wcancel(nil)
	var visited atomic.Int64
	go func() {
		last, since := int64(-1), time.Now()
		t := time.NewTicker(opts.Stall / 8)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			if v := visited.Load(); v != last {
				last, since = v, time.Now()
			} else if time.Since(since) > opts.Stall {
				wcancel(fmt.Errorf("no provider sent a block of %s for %s", root, opts.Stall))
				return
			}
		}
	}()
	sess := merkledag.NewSession(wctx, dag)
	walkLinks := func(ctx context.Context, c cid.Cid) ([]*ipld.Link, error) {
		nd, err := sess.Get(ctx, c)
		if err != nil {
			if cause := context.Cause(wctx); cause != nil && ctx.Err() == nil {
				return nil, cause
			}
			return nil, err
		}
		visited.Add(1)
		if opts.MaxBytes > 0 && size.Add(int64(len(nd.RawData()))) > opts.MaxBytes {
			return nil, fmt.Errorf("the DAG is larger than %d bytes: %w", opts.MaxBytes, ErrTooLarge)
		}
		return nd.Links(), nil
	}
	seen := cid.NewSet()
	var seenMu sync.Mutex
	err := merkledag.Walk(wctx, walkLinks, root, func(c cid.Cid) bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return seen.Visit(c)
	}, merkledag.Concurrency(32), visit)
	report()
	if cause := context.Cause(wctx); err != nil && cause != nil && ctx.Err() == nil {
		err = cause
	}
	if err != nil {
		return f, fmt.Errorf("fetch %s: %w", root, errors.Join(append([]error{err}, streamErrs...)...))
	}
	return f, nil
}

// fetchStream reads the DAG under root from one peer over DAGProtocol.
func (x *Host) fetchStream(ctx context.Context, p peer.AddrInfo, root cid.Cid, store recordingStore, opts FetchOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := x.h.Connect(ctx, p); err != nil {
		return err
	}
	s, err := x.NewStream(ctx, p.ID, DAGProtocol, opts.Stall)
	if err != nil {
		return err
	}
	defer s.Reset()
	go func() {
		<-ctx.Done()
		s.Reset()
	}()
	if err := WriteFrame(s, root.Bytes()); err != nil {
		return err
	}
	s.CloseWrite()
	want := map[cid.Cid]bool{root: true}
	var total int64
	// Verified blocks go to the blockstore from a third goroutine, so
	// disk writes overlap reading and hashing.
	const batch = 16
	var pending []blocks.Block
	puts := make(chan []blocks.Block, 8)
	putErr := make(chan error, 1)
	const putters = 2 // file creation, not CPU, bounds an on-disk store
	var putWG sync.WaitGroup
	var putMu sync.Mutex
	var firstPutErr error
	for range putters {
		putWG.Go(func() {
			for bs := range puts {
				if err := store.PutMany(ctx, bs); err != nil {
					putMu.Lock()
					if firstPutErr == nil {
						firstPutErr = err
					}
					putMu.Unlock()
				}
			}
		})
	}
	go func() {
		putWG.Wait()
		putErr <- firstPutErr
	}()
	putsOpen := true
	flush := func() error {
		if len(pending) > 0 {
			puts <- pending
			pending = nil
		}
		return nil
	}
	finish := func() error {
		flush()
		if putsOpen {
			close(puts)
			putsOpen = false
			return <-putErr
		}
		return nil
	}
	defer finish()
	// One goroutine reads frames while this one hashes and stores them.
	frames := make(chan []byte, 64)
	readErr := make(chan error, 1)
	go func() {
		defer close(frames)
		for {
			fr, err := s.ReadFrame(maxBlock + 128)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case frames <- fr:
			case <-ctx.Done():
				return
			}
			if len(fr) == 0 {
				return
			}
		}
	}()
	for {
		fr, ok := <-frames
		if !ok {
			flush()
			select {
			case err := <-readErr:
				return err
			default:
				return ctx.Err()
			}
		}
		if len(fr) == 0 {
			break
		}
		n, c, err := cid.CidFromBytes(fr)
		if err != nil {
			return fmt.Errorf("peer %s sent a malformed block: %w", p.ID, err)
		}
		if !want[c] {
			return fmt.Errorf("peer %s sent block %s, which is not part of the DAG asked for", p.ID, c)
		}
		delete(want, c)
		b, err := blocks.NewBlockWithCid(fr[n:], c)
		if err == nil {
			err = verify(b)
		}
		if err != nil {
			return fmt.Errorf("peer %s sent a wrong block: %w", p.ID, err)
		}
		total += int64(len(b.RawData()))
		if opts.MaxBytes > 0 && total > opts.MaxBytes {
			return fmt.Errorf("the DAG is larger than %d bytes: %w", opts.MaxBytes, ErrTooLarge)
		}
		if c.Prefix().Codec == uint64(multicodec.DagPb) {
			nd, err := merkledag.DecodeProtobufBlock(b)
			if err != nil {
				return fmt.Errorf("peer %s sent a malformed node %s: %w", p.ID, c, err)
			}
			for _, l := range nd.Links() {
				want[l.Cid] = true
			}
		}
		pending = append(pending, b)
		if len(pending) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := finish(); err != nil {
		return err
	}
	if len(want) > 0 {
		return fmt.Errorf("peer %s ended the DAG with %d blocks missing", p.ID, len(want))
	}
	return nil
}

// verify checks a block's bytes hash to its CID.
func verify(b blocks.Block) error {
	got, err := b.Cid().Prefix().Sum(b.RawData())
	if err != nil {
		return err
	}
	if !got.Equals(b.Cid()) {
		return fmt.Errorf("block %s: its bytes do not match its CID", b.Cid())
	}
	return nil
}

// serveDAG answers DAGProtocol from the local blockstore, with the same
// per-block filter bitswap applies.
func (x *Host) serveDAG(ns network.Stream) {
	s := WrapStream(ns, 15*time.Second)
	defer s.Close()
	fr, err := s.ReadFrame(128)
	if err != nil {
		s.Reset()
		return
	}
	root, err := cid.Cast(fr)
	if err != nil {
		s.Reset()
		return
	}
	ctx, cancel := context.WithCancel(x.ctx)
	defer cancel()
	w := bufio.NewWriterSize(s, 256<<10)
	from := ns.Conn().RemotePeer()
	stack := []cid.Cid{root}
	seen := cid.NewSet()
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !seen.Visit(c) {
			continue
		}
		if x.cfg.ServeBlock != nil && !x.cfg.ServeBlock(from, c) {
			break
		}
		b, err := x.bs.Get(ctx, c)
		if err != nil {
			break // the asker fetches what we lack elsewhere
		}
		data := b.RawData()
		if err := writeBlock(w, c, data); err != nil {
			s.Reset()
			return
		}
		if c.Prefix().Codec == uint64(multicodec.DagPb) {
			nd, err := merkledag.DecodeProtobufBlock(b)
			if err != nil {
				break
			}
			links := nd.Links()
			for i := len(links) - 1; i >= 0; i-- {
				stack = append(stack, links[i].Cid)
			}
		}
	}
	if WriteFrame(w, nil) != nil || w.Flush() != nil {
		s.Reset()
	}
}

func writeBlock(w *bufio.Writer, c cid.Cid, data []byte) error {
	cb := c.Bytes()
	var hdr [10]byte
	n := binary.PutUvarint(hdr[:], uint64(len(cb)+len(data)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if _, err := w.Write(cb); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}
