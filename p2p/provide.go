package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ReprovideInterval is how often provider records are announced again.
// Records live 48 hours in the DHT; announcing four times as often keeps a
// key findable through restarts and churn.
const ReprovideInterval = 12 * time.Hour

// Provide announces that this node serves key, now and on every reprovide
// round until Unprovide.
func (x *Host) Provide(ctx context.Context, key cid.Cid) error {
	x.provMu.Lock()
	x.provided[key] = true
	x.provMu.Unlock()
	if err := x.dht.Provide(ctx, key, true); err != nil {
		return fmt.Errorf("provide %s: %w", key, err)
	}
	return nil
}

// Unprovide stops announcing key; its records expire on their own.
func (x *Host) Unprovide(key cid.Cid) {
	x.provMu.Lock()
	delete(x.provided, key)
	x.provMu.Unlock()
}

// FindProviders returns up to count peers that announced key, other than
// this node.
func (x *Host) FindProviders(ctx context.Context, key cid.Cid, count int) []peer.AddrInfo {
	var out []peer.AddrInfo
	for ai := range x.dht.FindProvidersAsync(ctx, key, count+1) {
		if ai.ID == x.h.ID() {
			continue
		}
		out = append(out, ai)
		if len(out) == count {
			break
		}
	}
	return out
}

func (x *Host) reprovideLoop() {
	defer x.wg.Done()
	t := time.NewTicker(ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-t.C:
		}
		x.Reprovide(x.ctx)
	}
}

// Reprovide announces every provided key again now.
func (x *Host) Reprovide(ctx context.Context) {
	x.provMu.Lock()
	keys := make([]cid.Cid, 0, len(x.provided))
	for k := range x.provided {
		keys = append(keys, k)
	}
	x.provMu.Unlock()
	for _, k := range keys {
		if err := x.dht.Provide(ctx, k, true); err != nil && ctx.Err() == nil {
			x.log.Warn("reprovide", "key", k, "err", err)
		}
	}
}

func memBatching() ds.Batching { return dssync.MutexWrap(ds.NewMapDatastore()) }
