package node

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"erg"
)

// fedBench is a file drop grain on node A, shared with node B's owner and
// opened on both, and a raw libp2p stream protocol between the two hosts.
type fedBench struct {
	a, b                 *testNode
	localOrigin, bOrigin string
	grainID              string
}

const (
	benchEcho = "/erg-bench/echo"
	benchBig  = "/erg-bench/big"
)

func newFedBench(b *testing.B) *fedBench {
	ctx := context.Background()
	a := startNode(b, func(c *Config) { c.Name = "anode" })
	bn := startNode(b, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(b, a, bn)
	// File drop serves files by streaming them from its /var/files.
	id, origin := a.newGrain("filedrop")
	files := filepath.Join(a.grains.Dir(id), "var", "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "small"), []byte("hello\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), id, erg.ShareRequest{Role: "viewer", Friend: "bnode"}); err != nil {
		b.Fatal(err)
	}
	rg := sharedWith(b, bn, bn.owner(), "Untitled File drop")
	f := &fedBench{a: a, b: bn, localOrigin: origin, bOrigin: openOn(b, bn, bn.owner(), rg.ID), grainID: id}
	h := a.p2p.host.Libp2p()
	h.SetStreamHandler(benchEcho, func(s network.Stream) { io.Copy(s, s); s.Close() })
	h.SetStreamHandler(benchBig, func(s network.Stream) {
		var n [8]byte
		io.ReadFull(s, n[:])
		io.CopyN(s, zeroReader{}, int64(binary.BigEndian.Uint64(n[:])))
		s.Close()
	})
	return f
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func fetch(b *testing.B, c *http.Client, u string) int64 {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %s", u, resp.Status)
	}
	return n
}

func p50(n int, f func()) time.Duration {
	for range 50 {
		f()
	}
	ds := make([]time.Duration, n)
	for i := range ds {
		t0 := time.Now()
		f()
		ds[i] = time.Since(t0)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

// BenchmarkFriendGrainLatency times a small download (6 bytes) to a friend's grain
// through both nodes (B's proxy, Cap'n Proto over libp2p, A's grain)
// beside the same request to the grain on A, and a raw 8-byte round trip
// on a libp2p stream between the nodes, all in the same run.
func BenchmarkFriendGrainLatency(b *testing.B) {
	f := newFedBench(b)
	s, err := f.b.p2p.host.Libp2p().NewStream(context.Background(), f.a.p2p.host.ID(), benchEcho)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 8)
	const n = 1000
	var local, friend, raw time.Duration
	b.ResetTimer()
	for range b.N {
		local = p50(n, func() { fetch(b, f.a.http, f.localOrigin+"/files/small") })
		friend = p50(n, func() { fetch(b, f.b.http, f.bOrigin+"/files/small") })
		raw = p50(n, func() {
			s.Write(buf)
			io.ReadFull(s, buf)
		})
	}
	b.ReportMetric(float64(local.Microseconds()), "local-p50-µs")
	b.ReportMetric(float64(friend.Microseconds()), "friend-p50-µs")
	b.ReportMetric(float64(raw.Microseconds()), "libp2p-rtt-p50-µs")
	b.ReportMetric(float64(friend)/float64(local+raw), "friend/(local+rtt)")
}

// BenchmarkFriendGrainDownload moves 50 MB from a friend's grain through
// both nodes beside the same bytes on one raw libp2p stream, and from the
// grain on A directly.
func BenchmarkFriendGrainDownload(b *testing.B) {
	const size = 50 << 20
	f := newFedBench(b)
	if err := os.WriteFile(filepath.Join(f.a.grains.Dir(f.grainID), "var", "files", "big"), make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	var friendT, rawT, localT time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if got := fetch(b, f.b.http, f.bOrigin+"/files/big"); got != size {
			b.Fatalf("friend download: %d bytes", got)
		}
		friendT += time.Since(t0)

		t0 = time.Now()
		if got := fetch(b, f.a.http, f.localOrigin+"/files/big"); got != size {
			b.Fatalf("local download: %d bytes", got)
		}
		localT += time.Since(t0)

		t0 = time.Now()
		s, err := f.b.p2p.host.Libp2p().NewStream(context.Background(), f.a.p2p.host.ID(), benchBig)
		if err != nil {
			b.Fatal(err)
		}
		s.Write(binary.BigEndian.AppendUint64(nil, size))
		if got, _ := io.Copy(io.Discard, s); got != size {
			b.Fatalf("raw stream: %d bytes", got)
		}
		s.Close()
		rawT += time.Since(t0)
	}
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(mb/friendT.Seconds(), "friend-MB/s")
	b.ReportMetric(mb/localT.Seconds(), "local-MB/s")
	b.ReportMetric(mb/rawT.Seconds(), "libp2p-MB/s")
	b.ReportMetric(rawT.Seconds()/friendT.Seconds(), "friend/libp2p")
}
