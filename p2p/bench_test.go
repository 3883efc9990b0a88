package p2p_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	unixfile "github.com/ipfs/boxo/ipld/unixfs/file"
	"github.com/libp2p/go-libp2p/core/network"

	"erg/p2p"
	"erg/p2p/p2ptest"
)

// BenchmarkPackageFetch fetches a package-shaped DAG (256 KiB raw leaves,
// as erg app packages are) between two hosts on loopback TCP, each with an
// on-disk flatfs blockstore, and reports beside it the baseline: the same
// bytes copied over one raw libp2p stream between the same hosts, in the
// same run. "stream" is what an install does: the verified DAG stream from
// one provider into a scratch file (blocks reach the blockstore only once
// the package is installed); "bitswap" is the parallel bitswap walk alone
// into the same scratch store; "stream-to-blockstore" writes each block
// straight into the receiver's flatfs store instead. 500 MB runs
// with ERG_BENCH_BIG=1; ERG_BENCH_MEMDST=1 fetches into an in-memory store
// instead, to show what the protocol does without the receiver's disk.
func BenchmarkPackageFetch(b *testing.B) {
	sizes := []int64{50 << 20}
	if os.Getenv("ERG_BENCH_BIG") != "" {
		sizes = append(sizes, 500<<20)
	}
	for _, size := range sizes {
		for _, mode := range []string{"stream", "bitswap", "stream-to-blockstore"} {
			b.Run(mode+"/"+sizeName(size), func(b *testing.B) { benchFetch(b, size, mode) })
		}
	}
}

func sizeName(n int64) string {
	return map[int64]string{50 << 20: "50MB", 500 << 20: "500MB"}[n]
}

const rawProto = "/erg-bench/raw/1"

func benchFetch(b *testing.B, size int64, mode string) {
	dir := b.TempDir()
	src := p2ptest.NewTestNet(b, 1, func(_ int, c *p2p.Config) { c.BlocksDir = filepath.Join(dir, "src") })[0]
	root := p2ptest.AddRandomFile(b, src, size)
	ctx := context.Background()
	// The raw baseline sends the file's own bytes, read from src's store.
	dag := merkledag.NewDAGService(src.BlockService())
	src.Libp2p().SetStreamHandler(rawProto, func(s network.Stream) {
		defer s.Close()
		nd, err := dag.Get(ctx, root)
		if err != nil {
			s.Reset()
			return
		}
		f, err := unixfile.NewUnixfsFile(ctx, dag, nd)
		if err != nil {
			s.Reset()
			return
		}
		io.Copy(s, f.(files.File))
	})
	var raw, fetch time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		// Each round fetches into a fresh host with an empty on-disk
		// store, as a first install does.
		b.StopTimer()
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		dst, err := p2p.New(ctx, p2p.Config{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			BlocksDir: dstDir(dir, i)})
		if err != nil {
			b.Fatal(err)
		}
		if err := dst.Bootstrap(ctx, src.Addrs()[0]); err != nil {
			b.Fatal(err)
		}
		if err := src.Provide(ctx, root); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		s, err := dst.Libp2p().NewStream(ctx, src.ID(), rawProto)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, s)
		if err != nil || n != size {
			b.Fatalf("raw copy: %d bytes, %v", n, err)
		}
		raw += time.Since(t0)
		b.StartTimer()

		opts := p2p.FetchOptions{NoStream: mode == "bitswap"}
		if mode != "stream-to-blockstore" {
			if opts.Into, err = p2p.NewTempStore(dir); err != nil {
				b.Fatal(err)
			}
		}
		t0 = time.Now()
		if _, err := dst.Fetch(ctx, root, opts); err != nil {
			b.Fatal(err)
		}
		fetch += time.Since(t0)
		b.StopTimer()
		if opts.Into != nil {
			opts.Into.Close()
		}
		dst.Close()
		b.StartTimer()
	}
	rawMBs := float64(size) * float64(b.N) / raw.Seconds() / 1e6
	fetchMBs := float64(size) * float64(b.N) / fetch.Seconds() / 1e6
	b.ReportMetric(rawMBs, "raw-MB/s")
	b.ReportMetric(fetchMBs, "fetch-MB/s")
	b.ReportMetric(100*fetchMBs/rawMBs, "%-of-raw")
}

func dstDir(dir string, i int) string {
	if os.Getenv("ERG_BENCH_MEMDST") != "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprint("dst", i))
}
