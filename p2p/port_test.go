package p2p_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg/p2p"
)

func startHost(t *testing.T, key ed25519.PrivateKey, portFile string) *p2p.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := p2p.New(ctx, p2p.Config{Key: key, Listen: p2p.Loopback, PortFile: portFile})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// ports are the tcp and udp ports in a host's addresses.
func ports(t *testing.T, h *p2p.Host) (tcp, udp []string) {
	t.Helper()
	for _, a := range h.Addrs() {
		f := strings.Split(a, "/")
		switch f[3] {
		case "tcp":
			tcp = append(tcp, f[4])
		case "udp":
			udp = append(udp, f[4])
		}
	}
	return tcp, udp
}

func TestPortIsChosenOnceAndKept(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	file := filepath.Join(t.TempDir(), "p2p-port")
	h := startHost(t, key, file)
	tcp, udp := ports(t, h)
	if len(tcp) != 1 || len(udp) != 1 || tcp[0] != udp[0] {
		t.Fatalf("tcp ports %v, udp ports %v: want one port for both", tcp, udp)
	}
	kept, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(kept)) != tcp[0] {
		t.Fatalf("port file holds %q (%v), host listens on %s", kept, err, tcp[0])
	}
	h.Close()

	h = startHost(t, key, file)
	defer h.Close()
	tcp2, udp2 := ports(t, h)
	if len(tcp2) != 1 || tcp2[0] != tcp[0] || len(udp2) != 1 || udp2[0] != udp[0] {
		t.Fatalf("after a restart: tcp %v udp %v, want %v %v", tcp2, udp2, tcp, udp)
	}
}

func TestTakenPortMovesToAFreeOne(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	file := filepath.Join(t.TempDir(), "p2p-port")
	h := startHost(t, key, file)
	tcp, _ := ports(t, h)
	h.Close()
	// Another program takes the port while the node is down.
	l, err := net.Listen("tcp", "127.0.0.1:"+tcp[0])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h = startHost(t, key, file)
	defer h.Close()
	tcp2, udp2 := ports(t, h)
	if len(tcp2) != 1 || tcp2[0] == tcp[0] || len(udp2) != 1 || udp2[0] != tcp2[0] {
		t.Fatalf("with %s taken: tcp %v udp %v, want one new port for both", tcp[0], tcp2, udp2)
	}
	kept, _ := os.ReadFile(file)
	if strings.TrimSpace(string(kept)) != tcp2[0] {
		t.Fatalf("port file holds %q, host moved to %s", kept, tcp2[0])
	}
}

func TestDamagedPortFileIsRefused(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, bad := range []string{"", "abc", "0", "70000", "-5"} {
		file := filepath.Join(t.TempDir(), "p2p-port")
		os.WriteFile(file, []byte(bad), 0o600)
		_, err := p2p.New(context.Background(), p2p.Config{Key: key, Listen: p2p.Loopback, PortFile: file})
		if err == nil || !strings.Contains(err.Error(), "delete it") {
			t.Errorf("port file %q: err %v, want a damaged-file error", bad, err)
		}
		if b, _ := os.ReadFile(file); string(b) != bad {
			t.Errorf("port file %q was changed to %q", bad, b)
		}
	}
}

func TestExplicitPortIsKeptAsGiven(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	file := filepath.Join(t.TempDir(), "p2p-port")
	h, err := p2p.New(context.Background(), p2p.Config{Key: key, PortFile: file,
		Listen: []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(port)}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if tcp, _ := ports(t, h); len(tcp) != 1 || tcp[0] != strconv.Itoa(port) {
		t.Fatalf("tcp ports %v, want %d", tcp, port)
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("a port file was written though no address asked for the node's port")
	}
}

func TestLoopbackHostRunsNoInternetServices(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	h := startHost(t, key, "")
	defer h.Close()
	if r := h.Reachability(); r.Kind != p2p.LocalOnly || !strings.Contains(r.Describe(), "this machine only") {
		t.Errorf("loopback host reachability %+v (%s)", r, r.Describe())
	}
	// No relay service, hole punching or AutoNAT answers here.
	for _, p := range h.Libp2p().Mux().Protocols() {
		if s := string(p); strings.Contains(s, "relay") || strings.Contains(s, "dcutr") || strings.Contains(s, "autonat") {
			t.Errorf("loopback host serves %s", s)
		}
	}
}
