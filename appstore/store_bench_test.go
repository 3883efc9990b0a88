package appstore

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// BenchmarkListingLookup measures, in a 50-node DHT on loopback, how long a
// random node takes to fetch a random app's listing from the DHT (Lookup,
// the path of `erg store show` and install) and to search by a tag, and
// how many DHT hops a lookup takes: a peer from the asker's own routing
// table is hop 1, a peer learned from a hop-n answer is hop n+1. It
// reports p50 and p95 of each.
func BenchmarkListingLookup(b *testing.B) {
	stores := storeNet(b, 50)
	const apps = 10
	var ids []string
	for i := range apps {
		key := testKey(byte(100 + i))
		pub := stores[(i*7)%len(stores)]
		l := testListing(key, 1)
		l.Publisher = pub.Host().ID().String()
		l.Tags = []string{"bench"}
		if _, err := pub.Publish(context.Background(), signT(b, l, key)); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, l.AppID)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var lookups, searches []time.Duration
	var hops []int
	b.ResetTimer()
	for range b.N {
		s := stores[rng.IntN(len(stores))]
		id := ids[rng.IntN(len(ids))]
		cctx, cancel := context.WithCancel(context.Background())
		ctx, events := routing.RegisterForQueryEvents(cctx)
		h := make(chan int, 1)
		go func() { h <- countHops(events) }()
		t0 := time.Now()
		l, err := s.Lookup(ctx, id)
		lookups = append(lookups, time.Since(t0))
		if err != nil || l.AppID != id {
			b.Fatalf("lookup: %v", err)
		}
		// The event channel closes with its context.
		cancel()
		hops = append(hops, <-h)

		t0 = time.Now()
		rep, err := s.Search(context.Background(), "bench")
		searches = append(searches, time.Since(t0))
		if err != nil || len(rep.Results) != apps {
			b.Fatalf("search found %d of %d: %v %v", len(rep.Results), apps, err, rep.Problems)
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(pct(lookups, 50)), "lookup-p50-ms")
	b.ReportMetric(ms(pct(lookups, 95)), "lookup-p95-ms")
	b.ReportMetric(ms(pct(searches, 50)), "search-p50-ms")
	b.ReportMetric(ms(pct(searches, 95)), "search-p95-ms")
	sort.Ints(hops)
	b.ReportMetric(float64(hops[len(hops)/2]), "hops-p50")
	b.ReportMetric(float64(hops[len(hops)*95/100]), "hops-p95")
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

// countHops reads a lookup's query events and returns its depth.
func countHops(events <-chan *routing.QueryEvent) int {
	depth := map[peer.ID]int{}
	max := 0
	for ev := range events {
		d := depth[ev.ID]
		if d == 0 {
			d = 1
			depth[ev.ID] = 1
		}
		switch ev.Type {
		case routing.SendingQuery:
			if d > max {
				max = d
			}
		case routing.PeerResponse:
			for _, r := range ev.Responses {
				if depth[r.ID] == 0 || depth[r.ID] > d+1 {
					depth[r.ID] = d + 1
				}
			}
		}
	}
	return max
}
