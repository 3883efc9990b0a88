package fed

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkRelayLatency times a small request to a grain through the relay
// (friend's proxy → Cap'n Proto over TCP → owner's side → app) beside the
// same request straight to the app, and a raw 8-byte round trip over TCP,
// all in the same run.
func BenchmarkRelayLatency(b *testing.B) {
	r := newRelay(b)
	direct := http.Client{Transport: &http.Transport{}}
	relayed := http.Client{Transport: &http.Transport{}}
	appURL := r.appURL
	do := func(c *http.Client, u string) {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	rtt := rawRoundTrip(b)
	const n = 2000
	measure := func(f func()) time.Duration {
		for range 100 {
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
	b.ResetTimer()
	var local, relay, raw time.Duration
	for range b.N {
		local = measure(func() { do(&direct, appURL+"/echo") })
		relay = measure(func() { do(&relayed, r.friend.URL+"/echo") })
		raw = measure(rtt)
	}
	b.ReportMetric(float64(local.Microseconds()), "local-p50-µs")
	b.ReportMetric(float64(relay.Microseconds()), "relay-p50-µs")
	b.ReportMetric(float64(raw.Microseconds()), "raw-rtt-p50-µs")
	b.ReportMetric(float64(relay)/float64(local+raw), "relay/(local+rtt)")
}

// BenchmarkRelayDownload moves 50 MB from a grain through the relay beside
// the same bytes over one raw TCP connection.
func BenchmarkRelayDownload(b *testing.B) {
	const size = 50 << 20
	r := newRelay(b)
	client := http.Client{Transport: &http.Transport{}}
	var relayT, rawT time.Duration
	for range b.N {
		t0 := time.Now()
		resp, err := client.Get(fmt.Sprintf("%s/big?n=%d", r.friend.URL, size))
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != size {
			b.Fatalf("got %d bytes", n)
		}
		resp.Body.Close()
		relayT += time.Since(t0)
		rawT += rawCopy(b, size)
	}
	mb := float64(size) / 1e6 * float64(b.N)
	b.ReportMetric(mb/relayT.Seconds(), "relay-MB/s")
	b.ReportMetric(mb/rawT.Seconds(), "raw-MB/s")
	b.ReportMetric(rawT.Seconds()/relayT.Seconds(), "relay/raw")
}

func rawRoundTrip(b *testing.B) func() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	buf := make([]byte, 8)
	return func() {
		c.Write(buf)
		io.ReadFull(c, buf)
	}
}

func rawCopy(b *testing.B, size int64) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.CopyN(c, zeros{}, size)
		c.Close()
	}()
	t0 := time.Now()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if n, _ := io.Copy(io.Discard, c); n != size {
		b.Fatalf("raw copy: %d bytes", n)
	}
	return time.Since(t0)
}
