package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestBenchHTTPSThroughAFriend measures, in the lab, HTTPS requests to
// a grain of A's from the café on the internet through R's forwarder
// (café to R, R to A over libp2p, TLS ending at A), beside the baseline
// from the same café straight to A through a port forward on A's router
// (the same TLS, grain and client, no friend in between), and from A's
// own home on the LAN. Each figure is requests per second with 4
// keep-alive connections at once, p50 and p99 of them, and p50 with a
// new connection (TCP and a full TLS handshake) per request
// (skipUnlessLabBench).
func TestBenchHTTPSThroughAFriend(t *testing.T) {
	skipUnlessLabBench(t)
	w := newHTTPSWorld(t)
	w.askR(t, w.homeBrowser(t))
	// The port forward an owner whose router allows it would set up.
	w.A.Router.Nft(fmt.Sprintf(`add rule inet erglab prerouting iifname "wan" tcp dport 443 dnat ip to %s
add rule inet erglab forward iifname "wan" oifname "lan" ct status dnat accept
`, w.A.LAN))

	g := w.a.NewGrain("notes", "bench")
	og, err := w.a.Client().OpenGrain(context.Background(), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil) // the grain's session, whichever way a request goes
	paths := []struct {
		name string
		from *NS
		addr string
	}{
		{"the café to A's port forward (baseline)", w.cafe, w.A.WAN + ":443"},
		{"the café through R's forwarder", w.cafe, RAddr + ":443"},
		{"A's home, on the LAN", w.A.Host, w.A.LAN + ":443"},
	}
	client := func(from *NS, addr string, keepAlive bool) *http.Client {
		return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return from.DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig:     &tls.Config{RootCAs: w.acme.Roots},
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: benchWorkers,
		}}
	}
	// Signing in through R sets the grain's cookie every path sends.
	get(t, client(w.cafe, RAddr+":443", false), og.URL)
	url := "https://g-" + g.ID + "." + aliceDomain + "/"

	// Two rounds, the paths taking turns, so that a change in the
	// machine's load falls on all of them.
	const rounds, each, fresh = 2, 250, 60
	kept := make([][]time.Duration, len(paths))
	spent := make([]time.Duration, len(paths))
	news := make([][]time.Duration, len(paths))
	for range rounds {
		for i, p := range paths {
			c := client(p.from, p.addr, true)
			for range 20 { // warm: the grain started, the connections open
				get(t, c, url)
			}
			times, d := hammer(t, c, url, each)
			kept[i], spent[i] = append(kept[i], times...), spent[i]+d
			nc := client(p.from, p.addr, false)
			for range fresh {
				start := time.Now()
				get(t, nc, url)
				news[i] = append(news[i], time.Since(start))
			}
		}
	}
	var baseRPS float64
	var baseP50, baseNew time.Duration
	for i, p := range paths {
		slices.Sort(kept[i])
		slices.Sort(news[i])
		rps := float64(len(kept[i])) / spent[i].Seconds()
		p50, p99, newP50 := kept[i][len(kept[i])/2], kept[i][len(kept[i])*99/100], news[i][len(news[i])/2]
		line := fmt.Sprintf("HTTPS to A's grain, %-40s %6.0f req/s  p50 %8v  p99 %8v  new connection p50 %8v",
			p.name, rps, p50.Round(time.Microsecond), p99.Round(time.Microsecond), newP50.Round(time.Microsecond))
		if i == 0 {
			baseRPS, baseP50, baseNew = rps, p50, newP50
		} else {
			line += fmt.Sprintf("  (%.2fx the baseline's req/s, p50 %.2fx, new connection p50 %.2fx)",
				rps/baseRPS, float64(p50)/float64(baseP50), float64(newP50)/float64(baseNew))
		}
		t.Log(line)
	}
}

// benchWorkers is how many requests TestBenchHTTPSThroughAFriend keeps
// in flight at once, each on its own keep-alive connection.
const benchWorkers = 4

// get fetches url, failing the test on an error or a status other than
// 200 after redirects.
func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// hammer sends each requests to url from each of benchWorkers
// goroutines at once and returns every request's time and the time all
// took.
func hammer(t *testing.T, c *http.Client, url string, each int) ([]time.Duration, time.Duration) {
	t.Helper()
	times := make([]time.Duration, benchWorkers*each)
	errs := make(chan error, benchWorkers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				s := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("GET %s: %d", url, resp.StatusCode)
					return
				}
				times[i*each+j] = time.Since(s)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return times, took
}
