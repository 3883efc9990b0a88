package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"erg/db"
	"erg/p2p/p2ptest"
)

// rawProtocol is the baseline's: a plain libp2p stream that the friend
// reads to the end and acknowledges with one byte.
const rawProtocol = "/erg/bench-raw/1"

// BenchmarkBackupToAFriend backs up the same tree as BenchmarkBackupVsRestic
// (ERG_BENCH_MB, default 256 MiB, in 2 MiB files) to a friend's node over
// loopback libp2p (TCP), first and after 1% of the files changed, and
// restores it from there; beside it, the same number of bytes sent over one
// raw libp2p stream between the same two hosts, in the same run.
func BenchmarkBackupToAFriend(b *testing.B) {
	mb := 256
	if v := os.Getenv("ERG_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb)
	}
	ctx := context.Background()
	hosts := p2ptest.NewTestNet(b, 2, nil)
	a, f := hosts[0], hosts[1]
	d, err := db.Open(ctx, filepath.Join(b.TempDir(), "erg.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	hold := NewHolder(d, filepath.Join(b.TempDir(), "held"), nil)
	f.Libp2p().SetStreamHandler(Protocol, hold.Serve)
	if err := hold.Offer(ctx, a.ID().String(), 1<<40); err != nil {
		b.Fatal(err)
	}
	f.Libp2p().SetStreamHandler(rawProtocol, func(s network.Stream) {
		io.Copy(io.Discard, s)
		s.Write([]byte{1})
		s.Close()
	})
	files := mb / 2
	src := b.TempDir()
	fillFiles(b, src, files, 2<<20, 1)
	k, _ := testKeys(b)
	remote := NewRemote(a, f.ID(), "friend", nil)
	cache := filepath.Join(b.TempDir(), "cache.json")
	snapshot := func() (time.Duration, int64) {
		t := &Target{Name: "friend", Dest: remote}
		start := time.Now()
		run := NewRun(ctx, &k.NodeKeys, []*Target{t}, cache, b.TempDir())
		if _, err := run.Snapshot(ctx, Source{Kind: "grain", Grain: GrainMeta{ID: "g"}, Roots: map[string]string{"var": src}}); err != nil {
			b.Fatal(err)
		}
		run.SaveCache()
		return time.Since(start), t.Written
	}
	b.ResetTimer()

	// The baseline: the same bytes over one raw stream.
	buf := make([]byte, 1<<20)
	start := time.Now()
	s, err := a.Libp2p().NewStream(ctx, f.ID(), rawProtocol)
	if err != nil {
		b.Fatal(err)
	}
	for range mb {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseWrite()
	if _, err := io.ReadFull(s, buf[:1]); err != nil {
		b.Fatal(err)
	}
	s.Close()
	raw := time.Since(start)

	first, firstW := snapshot()
	for i := range max(1, files/100) { // 1% of the files, one 4 KiB write each
		p := filepath.Join(src, fmt.Sprintf("d%02d/f%04d", (i*7)%files%16, (i*7)%files))
		bs, _ := os.ReadFile(p)
		copy(bs[len(bs)/2:], randBytes(4096))
		os.WriteFile(p, bs, 0o600)
	}
	inc, incW := snapshot()
	r, err := NewRestorer(ctx, k, []Named{{Name: "friend", Dest: remote}})
	if err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	start = time.Now()
	if _, _, err := r.Latest(ctx, func(h Header) bool { return true }, nil, func() (map[string]string, func(), error) {
		return map[string]string{"var": out}, func() { emptyDir(out) }, nil
	}); err != nil {
		b.Fatal(err)
	}
	restore := time.Since(start)
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(mb) / d.Seconds() }
	b.Logf("data: %d MiB in %d files, to a friend's node over loopback libp2p (TCP)", mb, files)
	b.Logf("raw libp2p stream     %d MiB in %v: %.0f MB/s", mb, raw.Round(time.Millisecond), mbps(raw))
	b.Logf("erg first backup      %v, %d MiB sent: %.0f MB/s (%.2fx the raw stream's time)", first.Round(time.Millisecond), firstW>>20, mbps(first), first.Seconds()/raw.Seconds())
	b.Logf("erg incremental (1%%)  %v, %.2f MiB sent", inc.Round(time.Millisecond), float64(incW)/(1<<20))
	b.Logf("erg restore           %v: %.0f MB/s (%.2fx the raw stream's time)", restore.Round(time.Millisecond), mbps(restore), restore.Seconds()/raw.Seconds())
}
