package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg/internal/testkit"
	"erg/nodetest"
	"erg/p2p"
)

// TestBenchGrainPaths measures, in the lab, a small request to a grain
// from A's browser (through A's node): A's own grain (no network between
// nodes: the baseline), C's grain over the direct path (C's router maps
// its port), and B's grain relayed through R (B is behind the hard NAT);
// then the raw libp2p round trip of each path from a plain libp2p host in
// the same homes; then a 50 MiB download over each path, and over D's
// punched one, beside a raw libp2p stream on it (downloads); then the time
// from a NAT flush on every router until each friend's grain answers
// again (skipUnlessLabBench).
func TestBenchGrainPaths(t *testing.T) {
	skipUnlessLabBench(t)
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

	downloads(t, w)

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

// downloads measures a 50 MiB download to A's browser from an echo
// grain's /bytes: A's own (no path between nodes), C's over the direct
// path (C's mapping), B's relayed through R, and D's where A and D punched
// through; beside each, the same bytes over a raw libp2p stream on the
// same path, over TCP and over QUIC (the lab helper's bulk mode): plain
// hosts in A's, B's, C's and D's homes, behind the same routers, the one
// in C's home mapped by C's router as C's node is, and a relay in R's
// namespace with erg's relay limits (p2p.RelayResources) carrying A's to
// B's (and A's to D's until they punch through). Erg's and the raw
// downloads take turns, three rounds, so the loaded machine weighs on
// both alike. Which transport carried erg's bytes the routers' byte counts
// tell. It logs the median MB/s of each.
func downloads(t *testing.T, w *world) {
	const rounds = 3
	type path struct {
		name  string
		on    *nodetest.Node
		legs  []Home   // the routers the bytes cross, and the peer of each
		peers []string // (for the transport they used)
		win   *nodetest.Window
		erg   []float64 // seconds
		wire  string    // the transport that carried erg's bytes
		raw   map[string]bulkPlan
		rawS  map[string][]float64 // by the transport the raw stream used
	}
	paths := []*path{
		{name: "A's own grain (baseline)", on: w.a},
		{name: "C's grain, direct", on: w.c, legs: []Home{w.A}, peers: []string{w.C.WAN}},
		{name: "B's grain, relayed through R", on: w.b, legs: []Home{w.A, w.B}, peers: []string{RAddr, RAddr}},
	}
	// D, behind an easy NAT like A's and with no mapping, is direct only
	// when the hole punch worked, which it does in most runs, not all.
	w.env.Befriend(w.r, w.d)
	awaitReach(t, w.d, p2p.Relayed)
	w.env.Befriend(w.a, w.d)
	punched := testkit.Poll(30*time.Second, func() bool {
		f, _ := friend(w.a, "dnode")
		return f.Path == "direct"
	}) == nil
	if punched {
		paths = append(paths, &path{name: "D's grain, hole-punched", on: w.d, legs: []Home{w.A}, peers: []string{w.D.WAN}})
	} else {
		t.Log("A and D stayed relayed in this run: no hole-punched download")
	}
	for _, p := range paths {
		g := p.on.NewGrain("echo", "download "+p.on.Name)
		if p.on != w.a {
			p.on.ShareWith(g, w.a, "editor") // echo's one role
		}
		p.win = w.a.Open(g)
		p.win.HTTP.Timeout = 5 * time.Minute
		if code, _ := p.win.Get("/bytes?n=100"); code != 200 {
			t.Fatalf("%s: /bytes = %d", p.name, code)
		}
		p.raw, p.rawS = map[string]bulkPlan{}, map[string][]float64{}
	}

	// The raw streams' hosts. Seeds name them: 1 the relay, 2 and 5 the
	// servers in B's home (reserved over TCP and over QUIC), 3 the server
	// in C's home, 4 the client in A's, 6 the server in D's home.
	relay := startBulk(t, w.R, "raw relay", bulkPlan{Role: "relay", Seed: 1, Allow: []byte{2, 4, 5, 6}})
	mapped := startBulk(t, w.C.Host, "raw server in C's home", bulkPlan{Role: "serve", Seed: 3, PortMap: true})
	fetch := bulkPlan{Role: "fetch", Seed: 4, Bytes: downloadBytes, Runs: 1}
	for wire, seed := range map[string]byte{"tcp": 2, "quic": 5} {
		viaR := startBulk(t, w.B.Host, "raw server in B's home over "+wire, bulkPlan{Role: "serve", Seed: seed, Relay: onWire(t, relay.Addrs, wire)})
		fetch.Server = onWire(t, mapped.Addrs, wire)
		paths[1].raw[wire] = fetch
		fetch.Server = onWire(t, viaR.Addrs, wire)
		paths[2].raw[wire] = fetch
	}
	if punched {
		// Met through the relay, then punched through: over whichever
		// transport the punch got through on.
		viaR := startBulk(t, w.D.Host, "raw server in D's home", bulkPlan{Role: "serve", Seed: 6, Relay: onWire(t, relay.Addrs, "tcp"), Punch: true})
		fetch.Server, fetch.Punch = viaR.Addrs[0], true
		paths[3].raw["punched"] = fetch
	}

	for range rounds {
		for _, p := range paths {
			before := carried(p.legs, p.peers)
			start := time.Now()
			resp, err := p.win.HTTP.Get(p.win.Origin + "/bytes?n=" + strconv.Itoa(downloadBytes))
			if err != nil {
				t.Fatalf("%s: download: %v", p.name, err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != downloadBytes || resp.StatusCode != 200 {
				t.Fatalf("%s: download: %s, %d of %d bytes, %v", p.name, resp.Status, n, downloadBytes, err)
			}
			p.erg = append(p.erg, time.Since(start).Seconds())
			p.wire = transport(before, carried(p.legs, p.peers))
			for _, plan := range p.raw {
				rep := fetchBulk(t, w.A.Host, plan)
				wire := "tcp"
				if strings.Contains(rep.Via, "/quic-v1") {
					wire = "quic"
				}
				p.rawS[wire] = append(p.rawS[wire], rep.Seconds...)
			}
		}
	}
	for _, p := range paths {
		erg := mbps(p.erg)
		line := fmt.Sprintf("%-32s 50 MiB download %6.1f MB/s", p.name, erg)
		if p.on != w.a {
			line += fmt.Sprintf(" over %-4s  raw libp2p stream:", p.wire)
			for _, wire := range []string{"tcp", "quic"} {
				if secs, ok := p.rawS[wire]; ok {
					line += fmt.Sprintf(" %s %6.1f MB/s", wire, mbps(secs))
				}
			}
			if secs, ok := p.rawS[p.wire]; ok {
				line += fmt.Sprintf("  (%.2f of the raw stream on its transport)", erg/mbps(secs))
			}
		}
		t.Log(line)
	}
}

// downloadBytes is the size of the download benchmarks: 50 MiB.
const downloadBytes = 50 << 20

// mbps is the median rate of downloads of downloadBytes that took secs.
func mbps(secs []float64) float64 {
	s := slices.Clone(secs)
	slices.Sort(s)
	return downloadBytes / 1e6 / s[len(s)/2]
}

// carried is, for each leg, the bytes its router's flows with its peer
// carried so far, over TCP and over UDP.
func carried(legs []Home, peers []string) [][2]int64 {
	var out [][2]int64
	for i, h := range legs {
		out = append(out, [2]int64{h.Bytes("tcp", peers[i]), h.Bytes("udp", peers[i])})
	}
	return out
}

// transport says which transport carried every leg's bytes between two
// counts ("tcp" or "quic", the one that moved at least the downloads'
// bytes on each leg), or what each leg moved when they differ.
func transport(before, after [][2]int64) string {
	var wires []string
	for i := range before {
		tcp, udp := after[i][0]-before[i][0], after[i][1]-before[i][1]
		switch {
		case tcp > downloadBytes && udp < downloadBytes:
			wires = append(wires, "tcp")
		case udp > downloadBytes && tcp < downloadBytes:
			wires = append(wires, "quic")
		default:
			wires = append(wires, fmt.Sprintf("(tcp %d MB, udp %d MB)", tcp>>20, udp>>20))
		}
	}
	if len(wires) > 0 && slices.Equal(wires, slices.Repeat(wires[:1], len(wires))) {
		return wires[0]
	}
	return strings.Join(wires, " and ")
}

// onWire is the public address in addrs on transport wire ("tcp" or
// "quic").
func onWire(t *testing.T, addrs []string, wire string) string {
	t.Helper()
	for _, a := range addrs {
		if strings.HasPrefix(a, "/ip4/1.2.0.") && strings.Contains(a, map[string]string{"tcp": "/tcp/", "quic": "/quic-v1/"}[wire]) {
			return a
		}
	}
	t.Fatalf("no public %s address in %v", wire, addrs)
	return ""
}

// bulkPlan, bulkReady and bulkReport mirror the helper's Bulk, BulkReady
// and BulkReport (internal/lab/stranger/bulk.go).
type bulkPlan struct {
	Role    string `json:"role"`
	Allow   []byte `json:"allow,omitempty"`
	PortMap bool   `json:"portMap,omitempty"`
	Relay   string `json:"relay,omitempty"`
	Server  string `json:"server,omitempty"`
	Punch   bool   `json:"punch,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	Runs    int    `json:"runs,omitempty"`
	Seed    byte   `json:"seed,omitempty"`
}

type bulkReady struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

type bulkReport struct {
	Seconds []float64 `json:"seconds"`
	Via     string    `json:"via"`
}

// startBulk starts a bulk relay or server in ns and waits until it says
// where it can be reached; the lab stops it when the test ends.
func startBulk(t *testing.T, ns *NS, name string, b bulkPlan) bulkReady {
	t.Helper()
	bin := testkit.GoBuild(t, "./internal/lab/stranger", filepath.Join(testkit.Dir(t), "bin", "stranger"))
	js, _ := json.Marshal(map[string]any{"bulk": b})
	p := ns.Daemon(name, bin, string(js))
	var r bulkReady
	nodetest.AwaitFor(t, 90*time.Second, name+" to be reachable", func() bool {
		select {
		case <-p.Done():
			t.Fatalf("%s exited: %s", name, p.Output())
		default:
		}
		for _, line := range strings.Split(p.Output(), "\n") {
			if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &r) == nil && len(r.Addrs) > 0 {
				return true
			}
		}
		return false
	})
	t.Logf("%s: %v", name, r.Addrs)
	return r
}

// fetchBulk runs a bulk download from ns and returns its report.
func fetchBulk(t *testing.T, ns *NS, b bulkPlan) bulkReport {
	t.Helper()
	bin := testkit.GoBuild(t, "./internal/lab/stranger", filepath.Join(testkit.Dir(t), "bin", "stranger"))
	js, _ := json.Marshal(map[string]any{"bulk": b})
	cmd := ns.Command(bin, string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("raw download from %s: %v\n%s", b.Server, err, stderr.String())
	}
	var rep bulkReport
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Seconds) == 0 {
		t.Fatalf("raw download's report: %v\n%s", err, out)
	}
	return rep
}
