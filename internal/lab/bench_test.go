package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"erg/nodetest"
	"erg/p2p"
)

// TestBenchGrainPaths measures, in the lab, a small request to a grain
// from A's browser (through A's node): A's own grain (no network between
// nodes: the baseline), C's grain over the direct path (C's router maps
// its port), and B's grain relayed through R (B is behind the hard NAT);
// then the raw libp2p round trip of each path from a plain libp2p host in
// the same homes; then the time from a NAT flush on every router until
// each friend's grain answers again. It is a measurement, not a check of
// speed: it runs with `make bench-internet` (ERG_LAB_BENCH=1) and logs
// each figure beside its baseline from the same run.
func TestBenchGrainPaths(t *testing.T) {
	if os.Getenv("ERG_LAB_BENCH") == "" {
		t.Skip("the lab's benchmarks run with make bench-internet (as root)")
	}
	w := newWorld(t)
	for _, n := range []*nodetest.Node{w.a, w.b, w.c} {
		w.env.Befriend(w.r, n)
	}
	awaitReach(t, w.c, p2p.Mapped)
	awaitReach(t, w.a, p2p.Relayed)
	awaitReach(t, w.b, p2p.Relayed)
	w.env.Befriend(w.a, w.b)
	w.env.Befriend(w.a, w.c)
	awaitPath(t, w.a, "cnode", "direct")
	awaitPath(t, w.a, "bnode", "relayed")

	paths := []struct {
		name string
		on   *nodetest.Node
	}{{"A's own grain (baseline)", w.a}, {"C's grain, direct", w.c}, {"B's grain, relayed through R", w.b}}
	const n = 300
	var base time.Duration
	var relayed, direct *nodetest.Window
	for i, p := range paths {
		g := p.on.NewGrain("notes", "bench "+p.on.Name)
		if p.on != w.a {
			p.on.ShareWith(g, w.a, "viewer")
		}
		win := w.a.Open(g)
		switch p.on {
		case w.b:
			relayed = win
		case w.c:
			direct = win
		}
		for range 20 { // warm: the grain started, the connection open
			win.Get("/")
		}
		times := make([]time.Duration, n)
		for j := range times {
			start := time.Now()
			if code, body := win.Get("/"); code != 200 {
				t.Fatalf("%s: GET / = %d %.200s", p.name, code, body)
			}
			times[j] = time.Since(start)
		}
		slices.Sort(times)
		p50, p99 := times[n/2], times[n*99/100]
		line := fmt.Sprintf("%-32s p50 %8v  p99 %8v", p.name, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
		if i == 0 {
			base = p50
		} else {
			line += fmt.Sprintf("  (p50 %.1fx the baseline)", float64(p50)/float64(base))
		}
		t.Log(line)
	}

	// The raw libp2p round trips of the same paths, from a plain libp2p
	// host in the same homes (internal/lab/stranger's ping mode): A's
	// home to C's mapping (the direct path), and A's home to R plus B's
	// home to R (the relayed path's two legs; R's relaying itself is what
	// the grain figure adds on top).
	cAddr := w.c.Status().ReachableAddrs[0]
	rAddr := publicAddr(t, w.r, RAddr)
	fromA := runStranger(t, w.A.Host, strangerPlan{Ping: []string{cAddr, rAddr}, PingCount: n})
	fromB := runStranger(t, w.B.Host, strangerPlan{Ping: []string{rAddr}, PingCount: n})
	pct := func(us []int64, q int) time.Duration {
		s := slices.Clone(us)
		slices.Sort(s)
		return time.Duration(s[len(s)*q/100]) * time.Microsecond
	}
	for _, r := range []struct {
		name     string
		p50, p99 time.Duration
	}{
		{"raw libp2p ping, A's home to C", pct(fromA.Pings[cAddr], 50), pct(fromA.Pings[cAddr], 99)},
		{"raw libp2p ping, A-R + B-R", pct(fromA.Pings[rAddr], 50) + pct(fromB.Pings[rAddr], 50), pct(fromA.Pings[rAddr], 99) + pct(fromB.Pings[rAddr], 99)},
	} {
		line := fmt.Sprintf("%-32s p50 %8v  p99 %8v", r.name, r.p50, r.p99)
		t.Log(line)
	}

	// The routers lose their NAT tables (and C's its mappings): how long
	// until a request to each friend's grain works again.
	healStart := time.Now()
	w.RestartRouters()
	for _, p := range []struct {
		name string
		win  *nodetest.Window
	}{{"C's grain, direct", direct}, {"B's grain, relayed through R", relayed}} {
		nodetest.AwaitFor(t, 90*time.Second, p.name+" to answer again", func() bool {
			return answers(p.win, 5*time.Second)
		})
		line := fmt.Sprintf("%-32s answers again %v after the NAT flush", p.name, time.Since(healStart).Round(10*time.Millisecond))
		t.Log(line)
	}
	f, _ := friend(w.a, "bnode")
	if f.Path != "relayed" {
		t.Errorf("B's path changed during the run: %s", f.Path)
	}
}

// answers says whether the grain in win answers GET / within d. A request
// that was in flight when the routers flushed waits on a dead connection,
// so each try has its own short deadline.
func answers(win *nodetest.Window, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, win.Origin+"/", nil)
	if err != nil {
		return false
	}
	resp, err := win.HTTP.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
