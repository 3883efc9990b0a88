package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProxy compares requests per second through the node's proxy
// with requests straight to the app's socket, same client code, same run,
// with one client and with eight concurrent ones.
func BenchmarkProxy(b *testing.B) {
	n := startNode(b, nil)
	id, origin := n.newGrain("echo")
	if code, _ := n.get(origin + "/"); code != 200 {
		b.Fatal("grain did not start")
	}
	sb := n.grains.SandboxOf(id)
	direct := &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, 8080) },
		MaxIdleConnsPerHost: 64,
	}}
	proxied := n.http
	proxied.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	const window = time.Second
	for _, workers := range []int{1, 8} {
		var directRPS, proxyRPS float64
		for range b.N {
			directRPS += rps(b, direct, "http://app/", workers, window)
			proxyRPS += rps(b, proxied, origin+"/", workers, window)
		}
		directRPS /= float64(b.N)
		proxyRPS /= float64(b.N)
		suffix := fmt.Sprintf("-c%d", workers)
		b.ReportMetric(directRPS, "direct-req/s"+suffix)
		b.ReportMetric(proxyRPS, "proxy-req/s"+suffix)
		b.ReportMetric(proxyRPS/directRPS, "proxy/direct"+suffix)
	}
}

// rps runs workers clients in a loop for d and returns requests per second.
func rps(b *testing.B, c *http.Client, url string, workers int, d time.Duration) float64 {
	var count atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("GET %s: %s", url, resp.Status)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / d.Seconds()
}

// BenchmarkGrainMemory reports the node's resident memory with no running
// grains and with 50 running notes grains, and what each grain costs (its
// cgroup's charge, and the proportional set size of its processes, which
// splits pages shared with other grains and the node among them).
func BenchmarkGrainMemory(b *testing.B) {
	const grains = 50
	for range b.N {
		n := startNode(b, nil)
		before := rssKB(b, os.Getpid())
		var perGrainPSS, perGrainCgroup int64
		var pids []int
		for range grains {
			id, origin := n.newGrain("notes")
			if code, _ := n.get(origin + "/api/note"); code != 200 {
				b.Fatalf("notes grain answered %d", code)
			}
			pids = append(pids, n.grains.SandboxOf(id).Pid())
			if mem, err := n.grains.SandboxOf(id).MemoryUsage(); err == nil {
				perGrainCgroup += mem
			}
		}
		after := rssKB(b, os.Getpid())
		for _, pid := range pids {
			perGrainPSS += treePSSKB(pid)
		}
		b.ReportMetric(float64(before)/1024, "node-MiB-0-grains")
		b.ReportMetric(float64(after)/1024, "node-MiB-50-grains")
		b.ReportMetric(float64(perGrainPSS)/grains/1024, "grain-pss-MiB")
		b.ReportMetric(float64(perGrainCgroup)/grains/(1<<20), "grain-cgroup-MiB")
		n.Close()
	}
}

// rssKB reads VmRSS of a process.
func rssKB(tb testing.TB, pid int) int64 {
	kb, err := vmRSS(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return kb
}

func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, nil
}

// treePSSKB sums Pss over a process and its descendants.
func treePSSKB(pid int) int64 {
	var sum int64
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			sum += kb
		}
	}
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, c := range strings.Fields(string(children)) {
		if cp, err := strconv.Atoi(c); err == nil {
			sum += treePSSKB(cp)
		}
	}
	return sum
}
