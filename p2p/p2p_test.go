package p2p_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"erg/p2p"
	"erg/p2p/p2ptest"
)

func TestProvideFindAndFetchAcrossALine(t *testing.T) {
	hosts := p2ptest.NewTestNet(t, 6, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, dst := hosts[0], hosts[5]
	root := p2ptest.AddRandomFile(t, src, 3<<20)
	if err := src.Provide(ctx, root); err != nil {
		t.Fatal(err)
	}
	provs := dst.FindProviders(ctx, root, 4)
	if len(provs) != 1 || provs[0].ID != src.ID() {
		t.Fatalf("providers of %s = %v, want %s", root, provs, src.ID())
	}
	var last p2p.FetchProgress
	f, err := dst.Fetch(ctx, root, p2p.FetchOptions{Progress: func(p p2p.FetchProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if last.Bytes < 3<<20 || last.Peers != 1 {
		t.Errorf("final progress %+v", last)
	}
	if has, _ := dst.Blockstore().Has(ctx, root); !has {
		t.Fatal("root missing after fetch")
	}
	if err := f.Discard(ctx); err != nil {
		t.Fatal(err)
	}
	if has, _ := dst.Blockstore().Has(ctx, root); has {
		t.Fatal("root still held after Discard")
	}

	// Over bitswap alone, from the host in the middle that now holds it too.
	mid := hosts[3]
	if _, err := mid.Fetch(ctx, root, p2p.FetchOptions{NoStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := mid.Provide(ctx, root); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if _, err := hosts[4].Fetch(ctx, root, p2p.FetchOptions{}); err != nil {
		t.Fatalf("fetch after the first provider left: %v", err)
	}
}

func TestFetchLimitAndBadPeers(t *testing.T) {
	hosts := p2ptest.NewTestNet(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := p2ptest.AddRandomFile(t, hosts[0], 2<<20)
	hosts[0].Provide(ctx, root)
	_, err := hosts[2].Fetch(ctx, root, p2p.FetchOptions{MaxBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("fetch over the limit: %v", err)
	}

	// A peer that claims the DAG but sends a block of other bytes, and one
	// that never answers: the fetch drops both and names what went wrong.
	bad := hosts[1]
	fake := cid.NewCidV1(uint64(multicodec.DagPb), mustSum(t, []byte("root")))
	bad.Libp2p().SetStreamHandler(p2p.DAGProtocol, func(s network.Stream) {
		ws := p2p.WrapStream(s, time.Second)
		ws.ReadFrame(128)
		var b bytes.Buffer
		b.Write(fake.Bytes())
		b.WriteString("not the root")
		p2p.WriteFrame(ws, b.Bytes())
		p2p.WriteFrame(ws, nil)
		s.Close()
	})
	bad.Provide(ctx, fake)
	_, err = hosts[2].Fetch(ctx, fake, p2p.FetchOptions{Stall: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "sent a wrong block") || !strings.Contains(err.Error(), "do not match its CID") {
		t.Fatalf("fetch from a peer that sends wrong bytes: %v", err)
	}
	// A peer that announces a block of more than the 2 MiB a block may be.
	big := cid.NewCidV1(uint64(multicodec.Raw), mustSum(t, []byte("big")))
	bad.Libp2p().SetStreamHandler(p2p.DAGProtocol, func(s network.Stream) {
		ws := p2p.WrapStream(s, time.Second)
		ws.ReadFrame(128)
		ws.Write([]byte{0x80, 0x80, 0x80, 0x02}) // a frame of 4 MiB follows
		time.Sleep(time.Second)
		s.Reset()
	})
	bad.Provide(ctx, big)
	_, err = hosts[2].Fetch(ctx, big, p2p.FetchOptions{Stall: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "over the size limit") {
		t.Fatalf("fetch from a peer that sends an oversized block: %v", err)
	}
	stall := cid.NewCidV1(uint64(multicodec.Raw), mustSum(t, []byte("stall")))
	bad.Libp2p().SetStreamHandler(p2p.DAGProtocol, func(s network.Stream) {
		time.Sleep(3 * time.Second)
		s.Reset()
	})
	bad.Provide(ctx, stall)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	start := time.Now()
	_, err = hosts[2].Fetch(sctx, stall, p2p.FetchOptions{Stall: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("fetch from a stalling peer: %v", err)
	}
	t.Logf("stalling peer: %v after %v", err, time.Since(start))
}

func mustSum(t *testing.T, b []byte) mh.Multihash {
	h, err := mh.Sum(b, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
