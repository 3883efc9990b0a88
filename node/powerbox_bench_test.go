package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"testing"
	"time"

	"erg"
	"erg/grains"
)

// BenchmarkBridge compares one grain reaching another through the bridge
// (an HTTP client on the requesting grain's loopback, the grant in its
// header) with a browser reaching the same grain through the node's proxy,
// for the same small request, in the same run: p50 and p99 latency with one
// client, and requests per second with one and with eight.
func BenchmarkBridge(b *testing.B) {
	n := startNode(b, nil)
	ctx := context.Background()
	reqID, _ := n.newGrain("echo")
	_, origin := n.newGrain("echo")
	target, targetOrigin := n.newGrain("echo")
	_ = origin
	claim, err := n.pbox.Pick(ctx, n.owner(), reqID, erg.PowerboxPick{Target: target, Role: "editor"})
	if err != nil {
		b.Fatal(err)
	}
	grant, err := n.pbox.Claim(ctx, reqID, claim, "bench")
	if err != nil {
		b.Fatal(err)
	}
	sb := n.grains.SandboxOf(reqID)
	// What the app in the requesting grain sees: a connection to its
	// loopback's bridge port, made inside its network namespace.
	inGrain := &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, grains.BridgePort) },
		MaxIdleConnsPerHost: 64,
	}}
	bridgeGet := func(c *http.Client) error {
		req, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
		req.Header.Set("Authorization", "Bearer "+grant.Token)
		return do(c, req)
	}
	browser := n.http
	browser.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	proxyGet := func(c *http.Client) error {
		req, _ := http.NewRequest("GET", targetOrigin+"/", nil)
		return do(c, req)
	}
	for range b.N {
		for _, m := range []struct {
			name string
			c    *http.Client
			get  func(*http.Client) error
		}{{"proxy", browser, proxyGet}, {"bridge", inGrain, bridgeGet}} {
			p50, p99 := latencies(b, m.c, m.get, 2000)
			b.ReportMetric(float64(p50.Microseconds()), m.name+"-p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), m.name+"-p99-µs")
			for _, workers := range []int{1, 8} {
				b.ReportMetric(loopRPS(b, m.c, m.get, workers, time.Second), fmt.Sprintf("%s-req/s-c%d", m.name, workers))
			}
		}
	}
}

func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	return nil
}

func latencies(b *testing.B, c *http.Client, get func(*http.Client) error, count int) (p50, p99 time.Duration) {
	d := make([]time.Duration, 0, count)
	for range count {
		t0 := time.Now()
		if err := get(c); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[len(d)*99/100]
}

func loopRPS(b *testing.B, c *http.Client, get func(*http.Client) error, workers int, window time.Duration) float64 {
	done := make(chan int)
	deadline := time.Now().Add(window)
	for range workers {
		go func() {
			k := 0
			for time.Now().Before(deadline) {
				if err := get(c); err != nil {
					b.Error(err)
					break
				}
				k++
			}
			done <- k
		}()
	}
	total := 0
	for range workers {
		total += <-done
	}
	return float64(total) / window.Seconds()
}
