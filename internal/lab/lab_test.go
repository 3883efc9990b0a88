package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// skipUnlessLab keeps the lab to `make test-internet`, which sets
// ERG_LAB=1: it needs root and builds namespaces, so `make test` leaves
// it out.
func skipUnlessLab(t *testing.T) {
	t.Helper()
	if os.Getenv("ERG_LAB") == "" {
		t.Skip("the internet lab runs with make test-internet (as root)")
	}
}

// skipUnlessLabBench keeps the lab's benchmarks to `make bench-internet`,
// which sets ERG_LAB_BENCH=1. They are measurements, not checks of
// speed: each logs its figures beside a baseline from the same run.
func skipUnlessLabBench(t *testing.T) {
	t.Helper()
	if os.Getenv("ERG_LAB_BENCH") == "" {
		t.Skip("the lab's benchmarks run with make bench-internet (as root)")
	}
}

// hostAddr is an address of the machine's own network, which no lab
// namespace may reach.
func hostAddr(t *testing.T) string {
	t.Helper()
	ifs, _ := net.InterfaceAddrs()
	for _, a := range ifs {
		if ip, _, err := net.ParseCIDR(a.String()); err == nil && ip.To4() != nil && !ip.IsLoopback() {
			return net.JoinHostPort(ip.String(), "22")
		}
	}
	return "8.8.8.8:53" // no address of its own: the outside world stands in
}

// seenFrom accepts one connection on ln and returns the address it came
// from.
func seenFrom(t *testing.T, ln net.Listener) string {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.RemoteAddr().String()
}

func TestInternetIsSealedAndNATsBehave(t *testing.T) {
	skipUnlessLab(t)
	in := NewInternet(t)
	// NewInternet checked the seal; try it from every namespace as well.
	for _, ns := range in.Namespaces() {
		if err := ns.Unreachable(hostAddr(t)); err != nil {
			t.Error(err)
		}
	}
	ln, err := in.R.Listen("tcp", RAddr+":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln2, err := in.R.Listen("tcp", RAddr+":7001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	ctx := context.Background()
	for _, h := range in.Homes() {
		// Two connections from one local port to two destinations: an
		// endpoint-independent NAT maps both to one public port, a hard
		// one to two.
		var seen []string
		for _, l := range []net.Listener{ln, ln2} {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.LAN), Port: 40000}, Control: reuseAddr}
			var c net.Conn
			err := h.Host.inside(func() (err error) {
				c, err = d.DialContext(ctx, "tcp", l.Addr().String())
				return err
			})
			if err != nil {
				t.Fatalf("%s to R: %v", h.Host.Name, err)
			}
			seen = append(seen, seenFrom(t, l))
			c.Close()
		}
		for _, s := range seen {
			if host, _, _ := net.SplitHostPort(s); host != h.WAN {
				t.Errorf("R saw %s from %s, want its router's address %s", s, h.Host.Name, h.WAN)
			}
		}
		_, p1, _ := net.SplitHostPort(seen[0])
		_, p2, _ := net.SplitHostPort(seen[1])
		if hard := p1 != p2; hard != (h.Kind == "hard") {
			t.Errorf("%s (%s NAT) mapped one local port to %s and %s", h.Router.Name, h.Kind, p1, p2)
		}
		// The internet cannot open connections into the home.
		if err := in.Stranger.Unreachable(net.JoinHostPort(h.LAN, "22")); err != nil {
			t.Error(err)
		}
		if !strings.Contains(h.Conntrack("tcp"), "dport=7000") {
			t.Errorf("%s's conntrack has no entry for the connection to R:\n%s", h.Router.Name, h.Conntrack("tcp"))
		}
	}
	if _, err := exec.LookPath("upnpc"); err == nil {
		out, err := in.C.Host.Run("upnpc", "-s")
		t.Logf("upnpc -s: %v\n%s", err, out)
	}
}

func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// TestChromiumInANamespace: the lab's Chromium runs inside its namespace:
// it loads a page served only on that namespace's loopback, which the
// machine's own loopback does not have.
func TestChromiumInANamespace(t *testing.T) {
	skipUnlessLab(t)
	if why := Usable(); why != "" {
		t.Skip(why)
	}
	l := New(t)
	ns := l.NS("web")
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<p id=where>inside %s</p>", r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("%s answers on the machine's loopback too: the test could not tell where the browser is", ln.Addr())
	}
	ctx := ns.Chromium(t)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := "http://" + ln.Addr().String() + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#where`)))
	if err != nil || !strings.HasPrefix(got, "inside 127.0.0.1") {
		t.Errorf("the page in the namespace's browser: %q, %v", got, err)
	}
}
