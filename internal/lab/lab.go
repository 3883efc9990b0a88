// Package lab builds sealed networks of Linux network namespaces for tests
// that need more than loopback: homes behind NAT routers, an "internet"
// bridge, processes and browsers running inside them. The namespaces link
// only to each other (veth pairs and bridges made inside them), never to
// the machine's own network, and Sealed proves it before anything runs.
// Everything a Lab makes it removes when the test ends, failed or not, and
// New removes what a crashed earlier run left.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// prefix starts every namespace a lab makes, followed by the pid of the
// test process that made it, so parallel runs cannot collide and a crashed
// run's leftovers are known by their dead pid.
const prefix = "erglab"

var leftover = regexp.MustCompile(`^` + prefix + `(\d+)-`)

// Lab is one test's set of namespaces and the processes in them.
type Lab struct {
	t   testing.TB
	tag string // prefix + pid

	mu    sync.Mutex
	nss   []*NS
	procs []*Proc
}

// NS is a network namespace of a Lab.
type NS struct {
	lab  *Lab
	Name string // short name, as the test calls it
	Full string // the name `ip netns` knows it by
}

// Usable says why labs cannot be made here, or "" if they can: they need
// root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), the ip command, and a kernel
// with network namespaces.
func Usable() string {
	if os.Geteuid() != 0 {
		return "the lab needs root (network namespaces, veth, nftables)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the lab needs the ip command (iproute2)"
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "this kernel has no network namespaces"
	}
	return ""
}

// New returns an empty lab, skipping the test if labs cannot be made here.
// It first removes what crashed earlier runs left behind.
func New(t testing.TB) *Lab {
	t.Helper()
	if why := Usable(); why != "" {
		t.Skip(why)
	}
	CleanLeftovers(t)
	l := &Lab{t: t, tag: prefix + strconv.Itoa(os.Getpid())}
	t.Cleanup(l.teardown)
	return l
}

// CleanLeftovers removes the namespaces (and kills the processes in them)
// of labs whose test process is gone.
func CleanLeftovers(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := leftover.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("lab: removing %s, left by a crashed run (pid %d)", name, pid)
		killIn(name)
		exec.Command("ip", "netns", "del", name).Run()
		os.RemoveAll(filepath.Join(netnsEtc, name))
	}
}

// killIn kills every process in a namespace.
func killIn(full string) {
	for range 3 {
		out, _ := exec.Command("ip", "netns", "pids", full).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if n, err := strconv.Atoi(p); err == nil && n != os.Getpid() {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *Lab) teardown() {
	l.mu.Lock()
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
		if procs[i].quiet && l.t.Failed() {
			l.t.Logf("lab: last output of %s:\n%s", procs[i].Name, procs[i].Output())
		}
	}
	for _, ns := range nss {
		killIn(ns.Full)
		if out, err := exec.Command("ip", "netns", "del", ns.Full).CombinedOutput(); err != nil {
			l.t.Errorf("lab: remove namespace %s: %v: %s", ns.Full, err, out)
		}
		if err := os.RemoveAll(filepath.Join(netnsEtc, ns.Full)); err != nil {
			l.t.Errorf("lab: %v", err)
		}
	}
}

// netnsEtc holds, per namespace, files that `ip netns exec` puts over
// /etc's own for the programs it runs there (resolv.conf).
const netnsEtc = "/etc/netns"

// Resolver makes programs started in the namespace ask the DNS server
// at addr (an IP address, port 53) for names, as a network's DHCP would
// tell them: /etc/netns/NAME/resolv.conf, which `ip netns exec` mounts
// over /etc/resolv.conf. Sockets the test process opens in the
// namespace (DialContext) do not read it.
func (ns *NS) Resolver(addr string) {
	ns.lab.t.Helper()
	dir := filepath.Join(netnsEtc, ns.Full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ns.lab.t.Fatalf("lab: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+addr+"\n"), 0o644); err != nil {
		ns.lab.t.Fatalf("lab: %v", err)
	}
}

// NS makes a namespace with its loopback up.
func (l *Lab) NS(name string) *NS {
	l.t.Helper()
	ns := &NS{lab: l, Name: name, Full: l.tag + "-" + name}
	if len(ns.Full) > 64 {
		l.t.Fatalf("lab: namespace name %s too long", ns.Full)
	}
	l.must("ip", "netns", "add", ns.Full)
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	ns.Must("ip", "link", "set", "lo", "up")
	return ns
}

// Namespaces are the lab's namespaces, in the order they were made.
func (l *Lab) Namespaces() []*NS {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*NS(nil), l.nss...)
}

func (l *Lab) must(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("lab: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Link joins two namespaces with a veth pair, ifa in a and ifb in b, and
// gives each end its address (CIDR, e.g. "10.0.0.1/24"; empty for none).
// The pair is made inside the namespaces, never in the root one.
func (l *Lab) Link(a *NS, ifa, addrA string, b *NS, ifb, addrB string) {
	l.t.Helper()
	l.must("ip", "link", "add", ifa, "netns", a.Full, "type", "veth", "peer", "name", ifb, "netns", b.Full)
	for _, e := range []struct {
		ns       *NS
		dev, cid string
	}{{a, ifa, addrA}, {b, ifb, addrB}} {
		if e.cid != "" {
			e.ns.Must("ip", "addr", "add", e.cid, "dev", e.dev)
		}
		e.ns.Must("ip", "link", "set", e.dev, "up")
	}
}

// Bridge makes a bridge named dev in ns with address cidr (empty: none)
// and enslaves the given interfaces of ns to it.
func (ns *NS) Bridge(dev, cidr string, ports ...string) {
	ns.lab.t.Helper()
	ns.Must("ip", "link", "add", dev, "type", "bridge")
	for _, p := range ports {
		ns.Must("ip", "link", "set", p, "master", dev)
	}
	if cidr != "" {
		ns.Must("ip", "addr", "add", cidr, "dev", dev)
	}
	ns.Must("ip", "link", "set", dev, "up")
}

// Command is a command to run inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Full, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(append([]string{name}, args...), " "), ns.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Must is Run, failing the test if the command fails.
func (ns *NS) Must(name string, args ...string) string {
	ns.lab.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		ns.lab.t.Fatalf("lab: %v", err)
	}
	return out
}

// Sysctl sets a sysctl (e.g. net.ipv4.ip_forward=1) in the namespace.
func (ns *NS) Sysctl(kv string) {
	ns.lab.t.Helper()
	ns.Must("sysctl", "-q", "-w", kv)
}

// Route adds a route in the namespace (e.g. "default", "via", "10.0.0.1").
func (ns *NS) Route(args ...string) {
	ns.lab.t.Helper()
	ns.Must("ip", append([]string{"route", "add"}, args...)...)
}

// Nft loads an nftables ruleset into the namespace.
func (ns *NS) Nft(ruleset string) {
	ns.lab.t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.lab.t.Fatalf("lab: nft in %s: %v\n%s\n%s", ns.Name, err, out, ruleset)
	}
}

// DialContext dials from inside the namespace: the socket is made on a
// thread that entered it, and keeps the namespace after. The test process
// uses it to reach a node's web port in a home.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.inside(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens inside the namespace, as DialContext dials.
func (ns *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.inside(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket listens for datagrams inside the namespace.
func (ns *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := ns.inside(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// inside runs f on a thread that entered the namespace; sockets f makes
// stay in it. The thread goes back to its own namespace after; if it
// cannot, it stays locked and exits with its goroutine, so no other
// goroutine ever runs in the lab.
func (ns *NS) inside(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- err
			return
		}
		defer home.Close()
		fd, err := os.Open("/var/run/netns/" + ns.Full)
		if err != nil {
			ch <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("enter %s: %w", ns.Name, err)
			return
		}
		err = f()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

type link struct {
	Name     string `json:"ifname"`
	NetnsID  *int   `json:"link_netnsid"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func links(cmd *exec.Cmd) ([]link, error) {
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	var ls []link
	return ls, json.Unmarshal(out, &ls)
}

// Sealed checks that no packet can leave the lab: every interface in its
// namespaces is loopback, a bridge or a veth whose other end is in another
// of its namespaces, and no interface of the root namespace (the
// machine's own network) has its other end in the lab.
func (l *Lab) Sealed() error {
	nss := l.Namespaces()
	// The root namespace's ids for the lab's namespaces.
	out, err := exec.Command("ip", "-j", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var listed []struct {
		Name string `json:"name"`
		ID   *int   `json:"id"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	ours := map[string]bool{}
	for _, ns := range nss {
		ours[ns.Full] = true
	}
	labIDs := map[int]string{}
	for _, e := range listed {
		if ours[e.Name] && e.ID != nil {
			labIDs[*e.ID] = e.Name
		}
	}
	root, err := links(exec.Command("ip", "-j", "-d", "link", "show"))
	if err != nil {
		return err
	}
	for _, ln := range root {
		if ln.NetnsID != nil {
			if name, ok := labIDs[*ln.NetnsID]; ok {
				return fmt.Errorf("root namespace interface %s links into the lab (%s)", ln.Name, name)
			}
		}
	}
	for _, ns := range nss {
		ls, err := links(ns.Command("ip", "-j", "-d", "link", "show"))
		if err != nil {
			return err
		}
		peers, err := ns.peerNamespaces()
		if err != nil {
			return err
		}
		for _, ln := range ls {
			switch {
			case ln.Name == "lo", ln.LinkInfo.Kind == "bridge":
			case ln.LinkInfo.Kind == "veth":
				if ln.NetnsID == nil {
					return fmt.Errorf("%s: veth %s has its other end in the same namespace", ns.Name, ln.Name)
				}
				if !ours[peers[*ln.NetnsID]] {
					return fmt.Errorf("%s: veth %s has its other end outside the lab (netns id %d)", ns.Name, ln.Name, *ln.NetnsID)
				}
			default:
				return fmt.Errorf("%s: interface %s (%q) is no lab link", ns.Name, ln.Name, ln.LinkInfo.Kind)
			}
		}
	}
	return nil
}

// peerNamespaces maps the ids this namespace gives other namespaces to
// their names.
func (ns *NS) peerNamespaces() (map[int]string, error) {
	out, err := ns.Command("ip", "-j", "netns", "list-id").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list-id in %s: %w", ns.Name, err)
	}
	var ids []struct {
		ID   int    `json:"nsid"`
		Name string `json:"name"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &ids); err != nil {
			return nil, fmt.Errorf("ip netns list-id in %s: %w", ns.Name, err)
		}
	}
	m := map[int]string{}
	for _, e := range ids {
		m[e.ID] = e.Name
	}
	return m, nil
}

// Unreachable checks that nothing in the namespace reaches addr (the
// machine's own address, say): a TCP connection to it must fail at once
// for want of a route or be refused by nothing in the lab.
func (ns *NS) Unreachable(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s reached %s", ns.Name, addr)
	}
	if errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("%s dialling %s: %v (want no route)", ns.Name, addr, err)
}
