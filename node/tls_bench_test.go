package node

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// target is one side of a comparison: a client and the URL it asks.
type target struct {
	c   *http.Client
	url string
}

// compare asks each target in turn, one client at a time, in short
// alternating rounds (so a load elsewhere on the machine falls on both
// alike), and returns each one's requests per second and median latency
// in milliseconds.
func compare(b *testing.B, targets ...target) (rps, p50 []float64) {
	b.Helper()
	const rounds, window = 10, 300 * time.Millisecond
	lat := make([][]time.Duration, len(targets))
	busy := make([]time.Duration, len(targets))
	for range rounds {
		for i, t := range targets {
			t0 := time.Now()
			for time.Since(t0) < window {
				r0 := time.Now()
				resp, err := t.c.Get(t.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("GET %s: %s", t.url, resp.Status)
				}
				lat[i] = append(lat[i], time.Since(r0))
			}
			busy[i] += time.Since(t0)
		}
	}
	for i := range targets {
		slices.Sort(lat[i])
		rps = append(rps, float64(len(lat[i]))/busy[i].Seconds())
		p50 = append(p50, float64(lat[i][len(lat[i])/2].Microseconds())/1000)
	}
	return rps, p50
}

// report averages compare's figures over b.N runs under names.
func report(b *testing.B, names []string, run func() (rps, p50 []float64)) {
	sumR, sumP := make([]float64, len(names)), make([]float64, len(names))
	for range b.N {
		r, p := run()
		for i := range names {
			sumR[i] += r[i]
			sumP[i] += p[i]
		}
	}
	for i, name := range names {
		b.ReportMetric(sumR[i]/float64(b.N), name+"-req/s")
		b.ReportMetric(sumP[i]/float64(b.N), name+"-p50-ms")
	}
}

// BenchmarkGrainHTTPS compares a grain over HTTPS (keep-alive, the node's
// own CA) with the same grain app over plain HTTP on localhost, one
// client, same run: what TLS costs per request once connected.
func BenchmarkGrainHTTPS(b *testing.B) {
	plain := startNode(b, nil)
	_, plainOrigin := plain.newGrain("echo")
	secure := startNode(b, func(c *Config) { c.Domain = "erg.test" })
	_, secureOrigin := secure.newGrain("echo")
	report(b, []string{"http", "https"}, func() ([]float64, []float64) {
		return compare(b, target{plain.http, plainOrigin + "/"}, target{secure.http, secureOrigin + "/"})
	})
}

// newConnClient makes a new connection (and TLS handshake) for every
// request, resuming sessions when cache is set.
func newConnClient(n *testNode, cache tls.ClientSessionCache) *http.Client {
	addr := n.Addr()
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: n.roots(), ClientSessionCache: cache},
	}}
}

// BenchmarkTLSHandshake compares requests that each open a new connection
// with a full TLS handshake against ones resuming a session from a
// ticket, to the node's web port, same run.
func BenchmarkTLSHandshake(b *testing.B) {
	n := startNode(b, func(c *Config) { c.Domain = "erg.test" })
	url := n.URL() + "/static/erg.css"
	full := newConnClient(n, nil)
	resumed := newConnClient(n, tls.NewLRUClientSessionCache(8))
	report(b, []string{"full", "resumed"}, func() ([]float64, []float64) {
		return compare(b, target{full, url}, target{resumed, url})
	})
}

// BenchmarkForwardedGrain compares a grain reached through a friend's
// forwarder (TLS spliced onto a libp2p stream to the grain's node) with
// the same grain reached directly over HTTPS, on loopback, same run.
func BenchmarkForwardedGrain(b *testing.B) {
	a := startNode(b, func(c *Config) { c.Domain = "alice.test"; c.Name = "alice" })
	f := startNode(b, func(c *Config) { c.Domain = "bob.test"; c.Owner = "bob"; c.Name = "bob" })
	befriend(b, a, f)
	fid, _ := peer.Decode(f.NodeID2())
	if _, err := a.forward.Ask(context.Background(), fid); err != nil {
		b.Fatal(err)
	}
	_, origin := a.newGrain("echo")
	u, _ := url.Parse(origin)
	via := throughFriend(a, f.Addr())
	via.Jar = a.http.Jar // the session the direct client signed in with
	via.CheckRedirect = nil
	report(b, []string{"direct", "forwarded"}, func() ([]float64, []float64) {
		return compare(b, target{a.http, origin + "/"}, target{via, "https://" + net.JoinHostPort(u.Hostname(), u.Port()) + "/"})
	})
}
