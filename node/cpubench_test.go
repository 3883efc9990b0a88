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
// start). Last, four probe grains spin at once, unlimited: each busy
// grain's weight counts against the node's, whose proxy the victim's
// requests pass. The target: the victim's p50 and p99 within 2x of idle
// with the node's defaults (spinner-unlimited). 2000 requests per case and round,
// so that one round's p99 rests on 20 samples, not 2.
//
//	go test -run '^$' -bench CPUIsolationProxy -benchtime 3x ./node/
func BenchmarkCPUIsolationProxy(b *testing.B) {
	n := startNode(b, nil)
	if !strings.HasPrefix(n.runner.CPULimits(), "on") {
		b.Skipf("CPU limits: %s", n.runner.CPULimits())
	}
	_, victim := n.newGrain("echo")
	// The first probe is the one a case may limit; the others spin too in
	// the case where the node's claim is smallest, each busy grain adding
	// its weight against the node's.
	spinnerID, spinner := n.newGrain("probe")
	spinners := []string{spinner}
	for range manySpinners - 1 {
		_, origin := n.newGrain("probe")
		spinners = append(spinners, origin)
	}
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
		name     string
		spinners int
		pct      *int
	}{
		{"idle", 0, nil},
		{"spinner-unlimited", 1, nil},
		{"spinner-limited", 1, &ceiling},
		{fmt.Sprintf("%d-spinners-unlimited", manySpinners), manySpinners, nil},
	}
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
			for _, s := range spinners[:c.spinners] {
				if err := get(ctx, s+"/"); err != nil {
					b.Fatal(err)
				}
				for range 2 { // two requests in flight keep it spinning throughout
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							get(ctx, s+"/spin?ms=500&threads="+strconv.Itoa(2*runtime.NumCPU()))
						}
					}()
				}
			}
			if c.spinners > 0 {
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
	fmt.Printf("\nthe echo grain's latency through the proxy while probe grains spin, each on %d threads, %d requests x %d round(s) per case\n\n", 2*runtime.NumCPU(), requests, b.N)
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

// manySpinners is how many grains spin at once in the benchmark's last
// case: with the node at three times a grain's weight, four busy grains
// leave it 300/700 of the machine where ten times left 1000/1400.
const manySpinners = 4

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
