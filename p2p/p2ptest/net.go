// Package p2ptest starts real p2p hosts on loopback for tests.
package p2ptest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"erg/p2p"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	uih "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"
)

// NewTestNet starts n hosts on 127.0.0.1 (TCP only, in-memory blocks) and
// joins them in a line, each host connected to the one before it only, so
// that anything found across it was routed through the DHT. It is for
// tests, here and in packages above.
func NewTestNet(t testing.TB, n int, mod func(i int, c *p2p.Config)) []*p2p.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hosts := make([]*p2p.Host, n)
	for i := range hosts {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		cfg := p2p.Config{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
		if mod != nil {
			mod(i, &cfg)
		}
		h, err := p2p.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		hosts[i] = h
		if i > 0 {
			if err := h.Bootstrap(ctx, hosts[i-1].Addrs()[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range hosts {
		if n == 1 {
			break
		}
		// Bootstrap waits until the dialled host is in the dialler's
		// table; the dialled host adds the dialler a moment later, and a
		// refresh with an empty table fails.
		for h.RoutingTableSize() == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("host %s has no peer in its routing table", h.ID())
			case <-time.After(5 * time.Millisecond):
			}
		}
		if err := h.RefreshRoutingTable(ctx); err != nil {
			t.Fatalf("refresh: %v", err)
		}
	}
	return hosts
}

// AddRandomFile imports size random bytes as a UnixFS file with 256 KiB
// raw leaves (as erg packages are built) into h's blockstore and returns
// its root.
func AddRandomFile(t testing.TB, h *p2p.Host, size int64) cid.Cid {
	t.Helper()
	dag := merkledag.NewDAGService(blockservice.New(h.Blockstore(), nil))
	params := uih.DagBuilderParams{
		Maxlinks:   uih.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cid.V1Builder{Codec: uint64(multicodec.DagPb), MhType: mh.SHA2_256},
		Dagserv:    dag,
	}
	db, err := params.New(chunker.NewSizeSplitter(io.LimitReader(rand.Reader, size), chunker.DefaultBlockSize))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(fmt.Errorf("import: %w", err))
	}
	return nd.Cid()
}
