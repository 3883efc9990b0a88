package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkCPUIsolationProxy: one grain (the probe) spins on twice as
// many threads as there are cores while another grain's (echo's) request
// latency through the node's proxy is measured, p50 and p99, beside the
// same with nothing spinning and with the spinner unlimited (the node's
// defaults: the same CPU weight as every grain, no ceiling), all in one
// run. Limited, the spinner has a CPU ceiling of half of each core, set
// by the node's owner for that grain (SetCPUPercent, applied at its next
// start). The target: the victim's p50 and p99 within 2x of idle with the
// node's defaults (spinner-unlimited). 2000 requests per case and round,
// so that one round's p99 rests on 20 samples, not 2.
//
//	go test -run '^$' -bench CPUIsolationProxy -benchtime 3x ./node/
func BenchmarkCPUIsolationProxy(b *testing.B) {
	n := startNode(b, nil)
	if !strings.HasPrefix(n.runner.CPULimits(), "on") {
		b.Skipf("CPU limits: %s", n.runner.CPULimits())
	}
	_, victim := n.newGrain("echo")
	spinnerID, spinner := n.newGrain("probe")
	tr := n.http.Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	client := &http.Client{Jar: n.http.Jar, Transport: tr, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	get := func(ctx context.Context, url string) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
	if err := get(context.Background(), victim+"/"); err != nil {
		b.Fatal(err)
	}
	const requests = 2000 // per case and round: a p99 of 20 samples
	ceiling := 50 * runtime.NumCPU()
	cases := []struct {
		name string
		spin bool
		pct  *int
	}{{"idle", false, nil}, {"spinner-unlimited", true, nil}, {"spinner-limited", true, &ceiling}}
	lat := map[string][]time.Duration{}
	for range b.N {
		for _, c := range cases {
			// The ceiling applies from the spinner's next start.
			if err := n.grains.Stop(context.Background(), spinnerID, "benchmark"); err != nil {
				b.Fatal(err)
			}
			if err := n.grains.SetCPUPercent(context.Background(), n.owner(), spinnerID, c.pct); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			if c.spin {
				if err := get(ctx, spinner+"/"); err != nil {
					b.Fatal(err)
				}
				for range 2 { // two requests in flight keep it spinning throughout
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							get(ctx, spinner+"/spin?ms=500&threads="+strconv.Itoa(2*runtime.NumCPU()))
						}
					}()
				}
				time.Sleep(300 * time.Millisecond)
			}
			for range requests {
				t0 := time.Now()
				if err := get(context.Background(), victim+"/"); err != nil {
					b.Fatal(err)
				}
				lat[c.name] = append(lat[c.name], time.Since(t0))
			}
			cancel()
			wg.Wait()
		}
	}
	b.StopTimer()
	pct := func(name string, p int) time.Duration {
		l := slices.Clone(lat[name])
		slices.Sort(l)
		return l[len(l)*p/100]
	}
	fmt.Printf("\nthe echo grain's latency through the proxy while the probe grain spins on %d threads, %d requests x %d round(s) per case\n\n", 2*runtime.NumCPU(), requests, b.N)
	fmt.Println("| case | p50 ms | p99 ms | p50 vs idle | p99 vs idle |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range cases {
		p50, p99 := pct(c.name, 50), pct(c.name, 99)
		fmt.Printf("| %s | %.2f | %.2f | %.2f | %.2f |\n", c.name, ms(p50), ms(p99), ms(p50)/ms(pct("idle", 50)), ms(p99)/ms(pct("idle", 99)))
		b.ReportMetric(ms(p50), c.name+"-p50-ms")
		b.ReportMetric(ms(p99), c.name+"-p99-ms")
	}
	fmt.Printf("\nthe spinner limited: a ceiling of %d%% of one core (half of each of %d cores)\n\n", ceiling, runtime.NumCPU())
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
