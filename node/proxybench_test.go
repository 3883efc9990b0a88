package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxyVsNginx measures, in one run and with one load generator
// (wrk), a tiny answer (100 bytes) from the echo app straight, behind
// nginx, and as a grain behind the node's proxy, at one and at eight
// connections; then 50 MB downloads from each. Besides requests per
// second and p50/p99 latency it prints each proxy's CPU per request from
// /proc (the node is this process; nginx its master and workers). The
// straight app runs outside any sandbox, as nginx's upstream; the
// grain's copy of it runs in its sandbox.
//
//	go test -run '^$' -bench ProxyVsNginx -benchtime 3x ./node/
func BenchmarkProxyVsNginx(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk; make bench-proxy installs it)")
	}
	n := startNode(b, nil)
	id, origin := n.newGrain("echo")
	if code, _ := n.get(origin + "/bytes?n=100"); code != 200 {
		b.Fatalf("the echo grain answered %d", code)
	}
	ou, _ := url.Parse(origin)
	var cookie string
	for _, c := range n.http.Jar.Cookies(ou) {
		cookie += c.Name + "=" + c.Value
	}
	app := startStraightEcho(b)
	targets := []*benchTarget{
		{name: "direct", url: "http://" + app.addr, pids: func() []int { return []int{app.pid} }},
	}
	if ngx := startNginx(b, app.addr); ngx != nil {
		// The straight app behind nginx, so that the app columns of
		// nginx and erg compare an app behind a proxy with another.
		ngx.app = func() []int { return []int{app.pid} }
		targets = append(targets, ngx)
	} else {
		fmt.Println("nginx is not installed (apt-get install nginx-light): its column is skipped")
	}
	sb := n.grains.SandboxOf(id)
	targets = append(targets, &benchTarget{
		name: "erg", url: "http://" + n.Addr(),
		headers: []string{"Host: " + ou.Host, "Cookie: " + cookie},
		pids:    func() []int { return []int{os.Getpid()} },
		app:     func() []int { return processTree(sb.Pid()) },
	})

	// What the node spends doing nothing, so that its CPU per request
	// can be read against it.
	idle0 := cpuTicks([]int{os.Getpid()})
	time.Sleep(2 * time.Second)
	fmt.Printf("\nthe node idle: %.1f%% of a core\n", float64(cpuTicks([]int{os.Getpid()})-idle0)/2)

	conns := []int{1, 8}
	results := map[string][]wrkResult{} // by target and connections
	for range b.N {
		for _, c := range conns {
			for _, t := range targets {
				r := t.run(b, wrk, c, "/bytes?n=100")
				k := fmt.Sprintf("%s/%d", t.name, c)
				results[k] = append(results[k], r)
			}
		}
	}
	fmt.Printf("\n100-byte answers, wrk, %d round(s) of %s each (ranges over rounds)\n\n", b.N, wrkDuration)
	fmt.Println("| conns | target | req/s | p50 | p99 | proxy CPU/req | app CPU/req |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range conns {
		for _, t := range targets {
			rs := results[fmt.Sprintf("%s/%d", t.name, c)]
			fmt.Printf("| %d | %s | %s | %s | %s | %s | %s |\n", c, t.name,
				span(rs, func(r wrkResult) float64 { return r.rps }, "%.0f"),
				span(rs, func(r wrkResult) float64 { return us(r.p50) }, "%.0f")+" µs",
				span(rs, func(r wrkResult) float64 { return us(r.p99) }, "%.0f")+" µs",
				span(rs, func(r wrkResult) float64 { return r.cpuPerReq }, "%.1f")+" µs",
				span(rs, func(r wrkResult) float64 { return r.appPerReq }, "%.1f")+" µs")
		}
	}
	fmt.Println()
	for _, c := range conns {
		erg := results[fmt.Sprintf("erg/%d", c)]
		for _, base := range []string{"direct", "nginx"} {
			bs := results[fmt.Sprintf("%s/%d", base, c)]
			if len(bs) == 0 {
				continue
			}
			ratio := make([]float64, len(erg))
			p99 := make([]float64, len(erg))
			for i := range erg {
				ratio[i] = erg[i].rps / bs[i].rps
				p99[i] = float64(erg[i].p99) / float64(bs[i].p99)
			}
			fmt.Printf("%d conn(s): erg/%s req/s %s, p99 erg/%s %s\n", c, base, eachOf(ratio, "%.2f"), base, eachOf(p99, "%.2f"))
			b.ReportMetric(slices.Min(ratio), fmt.Sprintf("erg/%s-c%d", base, c))
		}
	}

	// A 50 MB download, over and over on one keep-alive connection, with
	// wrk for each: a client outside the node's process. (A Go client in
	// this process, the node's, shares its runtime with the node, which
	// neither nginx nor the app straight has to: the node's downloads
	// measured so were half of the same client's from the app straight.)
	const size = 50 << 20
	path := "/bytes?n=" + strconv.Itoa(size)
	dl := map[string][]float64{}
	dlCPU := map[string][]float64{}
	for range b.N {
		for _, t := range targets {
			r := t.run(b, wrk, 1, path)
			dl[t.name] = append(dl[t.name], r.mbps)
			dlCPU[t.name] = append(dlCPU[t.name], r.cpuPerMB)
		}
	}
	// The grain's app without the proxy: how fast the sandbox itself
	// hands out the bytes (a Go client on the proxy's own dialer).
	inSandbox := &http.Client{Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, 8080) },
		DisableCompression: true,
	}}
	raw := &benchTarget{name: "raw", url: "http://app"}
	for range b.N {
		best := 0.0
		for range 3 {
			best = max(best, raw.download(b, inSandbox, path, size))
		}
		dl["raw"] = append(dl["raw"], best)
	}
	fmt.Printf("\n50 MB downloads on one connection, wrk, %s per round (ranges over rounds)\n", wrkDuration)
	for _, t := range targets {
		fmt.Printf("  %-6s %s MB/s, proxy CPU %s ms per 100 MB\n", t.name, spanOf(dl[t.name], "%.0f"), spanOf(dlCPU[t.name], "%.1f"))
	}
	fmt.Printf("  %-6s %s MB/s (the grain's app, from its sandbox without the proxy: a Go client in this process, best of 3)\n", "raw", spanOf(dl["raw"], "%.0f"))
	ratio := make([]float64, b.N)
	for i := range ratio {
		ratio[i] = dl["erg"][i] / dl["direct"][i]
	}
	fmt.Printf("  erg/direct %s\n\n", eachOf(ratio, "%.2f"))
	b.ReportMetric(slices.Min(ratio), "download-erg/direct")
}

const wrkDuration = 3 * time.Second

type benchTarget struct {
	name    string
	url     string   // scheme and host to connect to
	headers []string // for wrk
	pids    func() []int
	app     func() []int // the app's processes when not pids'
}

type wrkResult struct {
	rps                  float64
	p50, p99             time.Duration
	cpuPerReq, appPerReq float64 // µs of CPU per request
	mbps, read, cpuPerMB float64 // MB/s, bytes read, and the proxy's CPU in ms per 100 MB
}

// run points wrk at t with conns connections and counts the CPU the
// target's processes spent meanwhile.
func (t *benchTarget) run(b *testing.B, wrk string, conns int, path string) wrkResult {
	args := []string{"-t", strconv.Itoa(min(conns, 2)), "-c", strconv.Itoa(conns),
		"-d", wrkDuration.String(), "--latency", "--timeout", "2s"}
	for _, h := range t.headers {
		args = append(args, "-H", h)
	}
	args = append(args, t.url+path)
	pids := t.pids()
	var apps []int
	if t.app != nil {
		apps = t.app()
	}
	cpu0, app0 := cpuTicks(pids), cpuTicks(apps)
	out, err := exec.Command(wrk, args...).CombinedOutput()
	cpu1, app1 := cpuTicks(pids), cpuTicks(apps)
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", t.name, err, out)
	}
	r, reqs, err := parseWrk(string(out))
	if r.read > 0 {
		r.cpuPerMB = float64(cpu1-cpu0) * 10 / (r.read / 100e6) // ticks of 10 ms
	}
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", t.name, err, out)
	}
	const tick = 10_000 // µs: USER_HZ is 100 on Linux
	r.cpuPerReq = float64(cpu1-cpu0) * tick / float64(reqs)
	if t.app != nil {
		r.appPerReq = float64(app1-app0) * tick / float64(reqs)
	} else {
		r.appPerReq = r.cpuPerReq
	}
	return r
}

// download fetches path through t with c and returns MB/s.
func (t *benchTarget) download(b *testing.B, c *http.Client, path string, size int64) float64 {
	start := time.Now()
	resp, err := c.Get(t.url + path)
	if err != nil {
		b.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil || resp.StatusCode != 200 || got != size {
		b.Fatalf("download through %s: %s, %d bytes, %v", t.name, resp.Status, got, err)
	}
	return float64(size) / d.Seconds() / 1e6
}

// parseWrk reads requests/s, the 50th and 99th percentile and the number
// of requests from wrk --latency's report, refusing one with errors.
func parseWrk(out string) (wrkResult, int64, error) {
	var r wrkResult
	var reqs int64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50, _ = time.ParseDuration(f[1])
		case len(f) == 2 && f[0] == "Transfer/sec:":
			r.mbps = parseSize(f[1]) / 1e6
		case len(f) == 2 && f[0] == "99%":
			r.p99, _ = time.ParseDuration(f[1])
		case len(f) > 5 && f[1] == "requests" && f[2] == "in":
			reqs, _ = strconv.ParseInt(f[0], 10, 64)
			r.read = parseSize(f[4])
		case strings.Contains(line, "Non-2xx") || strings.Contains(line, "Socket errors"):
			return r, 0, fmt.Errorf("wrk saw errors: %s", strings.TrimSpace(line))
		}
	}
	if r.rps == 0 || reqs == 0 || r.p99 == 0 {
		return r, 0, fmt.Errorf("no figures in wrk's report")
	}
	return r, reqs, nil
}

// parseSize reads a size as wrk prints it ("812.50MB", binary units).
func parseSize(s string) float64 {
	for i, u := range []string{"KB", "MB", "GB", "TB"} {
		if v, ok := strings.CutSuffix(s, u); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * math.Pow(1024, float64(i+1))
		}
	}
	v, _ := strings.CutSuffix(s, "B")
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

type straightApp struct {
	addr string
	pid  int
}

// startStraightEcho runs the echo app as a plain process on a free
// loopback port.
func startStraightEcho(b *testing.B) straightApp {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	cmd := exec.Command(filepath.Join(testApps(b), "echo", "bin", "echo"))
	cmd.Env = append(os.Environ(), "PORT="+port, "ECHO_STATELESS=1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	awaitListening(b, addr)
	return straightApp{addr: addr, pid: cmd.Process.Pid}
}

// startNginx runs nginx as a reverse proxy to upstream, configured as a
// self-hoster would (keep-alive to the app, no access log), or returns
// nil when nginx is not installed.
func startNginx(b *testing.B, upstream string) *benchTarget {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			return nil
		}
		bin = "/usr/sbin/nginx"
	}
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the temp dirs are root's
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream app { server %[3]s; keepalive 32; }
	server {
		listen %[4]s;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
		}
	}
}
`, user, dir, upstream, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			b.Fatalf("nginx exited: %s%s", stderr.Bytes(), log)
		case <-ctx.Done():
			b.Fatal("nginx did not listen")
		case <-time.After(10 * time.Millisecond):
		}
	}
	pid := cmd.Process.Pid
	return &benchTarget{name: "nginx", url: "http://" + addr,
		pids: func() []int { return processTree(pid) },
		app:  func() []int { return nil }}
}

func awaitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cpuTicks sums the user and system time of processes, in clock ticks.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command's closing paren; utime and stime
		// are the 14th and 15th of the whole line.
		_, rest, _ := bytes.Cut(data, []byte(") "))
		f := strings.Fields(string(rest))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + s
	}
	return sum
}

// processTree is pid and its descendants.
func processTree(pid int) []int {
	pids := []int{pid}
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, c := range strings.Fields(string(children)) {
		if cp, err := strconv.Atoi(c); err == nil {
			pids = append(pids, processTree(cp)...)
		}
	}
	return pids
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func span(rs []wrkResult, f func(wrkResult) float64, format string) string {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return spanOf(vs, format)
}

// eachOf formats each of vs, round by round, so that a target can be
// counted as met in so many rounds.
func eachOf(vs []float64, format string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf(format, v)
	}
	return strings.Join(parts, " ")
}

// spanOf formats the range of vs: "a–b", or one figure.
func spanOf(vs []float64, format string) string {
	if len(vs) == 0 {
		return "-"
	}
	lo, hi := slices.Min(vs), slices.Max(vs)
	if fmt.Sprintf(format, lo) == fmt.Sprintf(format, hi) {
		return fmt.Sprintf(format, lo)
	}
	return fmt.Sprintf(format, lo) + "–" + fmt.Sprintf(format, hi)
}
