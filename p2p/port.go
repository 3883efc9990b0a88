package p2p

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// AllInterfaces is where a node listens when its owner names nothing: every
// interface, IPv4 and IPv6, TCP and QUIC, on the node's stable port (the 0
// is replaced by it, see Config.PortFile). A node at home must listen on
// the LAN for its router to forward to it.
var AllInterfaces = []string{
	"/ip4/0.0.0.0/tcp/0", "/ip6/::/tcp/0",
	"/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/udp/0/quic-v1",
}

// Loopback listens on 127.0.0.1 only, TCP and QUIC: what tests, benchmarks
// and `make run` pass, so nothing on a development machine listens on or
// dials another address.
var Loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// listenSpec is one parsed listen address.
type listenSpec struct {
	addr  ma.Multiaddr
	ip    net.IP
	udp   bool
	port  int
	proto int // ma.P_TCP or ma.P_UDP
}

func parseSpec(a ma.Multiaddr) (listenSpec, error) {
	s := listenSpec{addr: a}
	ip, err := manet.ToIP(a)
	if err != nil {
		return s, fmt.Errorf("p2p listen address %s: %w (want /ip4/ADDR/tcp/PORT or /ip4/ADDR/udp/PORT/quic-v1)", a, err)
	}
	s.ip = ip
	for _, p := range []int{ma.P_TCP, ma.P_UDP} {
		if v, err := a.ValueForProtocol(p); err == nil {
			s.proto = p
			s.udp = p == ma.P_UDP
			s.port, _ = strconv.Atoi(v)
			return s, nil
		}
	}
	return s, fmt.Errorf("p2p listen address %s has no tcp or udp port", a)
}

// withPort returns a with its port replaced.
func (s listenSpec) withPort(port int) (ma.Multiaddr, error) {
	name := "tcp"
	if s.udp {
		name = "udp"
	}
	old, _ := ma.NewComponent(name, strconv.Itoa(s.port))
	repl, _ := ma.NewComponent(name, strconv.Itoa(port))
	str := strings.Replace(s.addr.String(), old.String(), repl.String(), 1)
	return ma.NewMultiaddr(str)
}

// BeyondLoopback tells whether any of the listen addresses is reachable
// from another machine: only then may the node talk to the local network
// (ask the router for a port mapping).
func BeyondLoopback(addrs []ma.Multiaddr) bool {
	for _, a := range addrs {
		ip, err := manet.ToIP(a)
		if err != nil || !ip.IsLoopback() {
			return true
		}
	}
	return false
}

// stablePorts replaces port 0 in the listen addresses with the node's own
// port, the same for TCP and UDP: the one kept in file, or a free one it
// chooses and keeps there. If the kept port has since been taken by
// another program, it chooses a new one (friends find the node again
// through the DHT and their relays) and says so in moved.
func stablePorts(addrs []ma.Multiaddr, file string) (out []ma.Multiaddr, port int, moved bool, err error) {
	var specs []listenSpec
	want := false
	for _, a := range addrs {
		s, err := parseSpec(a)
		if err != nil {
			return nil, 0, false, err
		}
		specs = append(specs, s)
		want = want || s.port == 0
	}
	if !want || file == "" {
		return addrs, 0, false, nil
	}
	kept := 0
	if b, err := os.ReadFile(file); err == nil {
		kept, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || kept <= 0 || kept > 65535 {
			return nil, 0, false, fmt.Errorf("p2p port file %s is damaged (holds %q): delete it to choose a new port", file, strings.TrimSpace(string(b)))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, 0, false, fmt.Errorf("p2p port: %w", err)
	}
	port = kept
	if port == 0 || !portFree(specs, port) {
		moved = port != 0
		if port, err = freePort(specs); err != nil {
			return nil, 0, false, err
		}
	}
	if port != kept {
		if err := writeFileAtomic(file, []byte(strconv.Itoa(port)+"\n")); err != nil {
			return nil, 0, false, fmt.Errorf("p2p port: %w", err)
		}
	}
	for _, s := range specs {
		if s.port != 0 {
			out = append(out, s.addr)
			continue
		}
		a, err := s.withPort(port)
		if err != nil {
			return nil, 0, false, err
		}
		out = append(out, a)
	}
	return out, port, moved, nil
}

// portFree tells whether port can be bound on every address that asks for
// port 0. An address family the machine lacks (no IPv6) does not count:
// libp2p skips those listeners too.
func portFree(specs []listenSpec, port int) bool {
	for _, s := range specs {
		if s.port != 0 {
			continue
		}
		hp := net.JoinHostPort(s.ip.String(), strconv.Itoa(port))
		var err error
		if s.udp {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", hp); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", hp); err == nil {
				l.Close()
			}
		}
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) {
			return false
		}
	}
	return true
}

// freePort asks the kernel for a free TCP port on the first address and
// keeps it if it is free on the others (UDP included).
func freePort(specs []listenSpec) (int, error) {
	var first listenSpec
	for _, s := range specs {
		if s.port == 0 {
			first = s
			break
		}
	}
	for range 50 {
		var port int
		if first.udp {
			c, err := net.ListenPacket("udp", net.JoinHostPort(first.ip.String(), "0"))
			if err != nil {
				return 0, fmt.Errorf("p2p port: %w", err)
			}
			port = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		} else {
			l, err := net.Listen("tcp", net.JoinHostPort(first.ip.String(), "0"))
			if err != nil {
				return 0, fmt.Errorf("p2p port: %w", err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if portFree(specs, port) {
			return port, nil
		}
	}
	return 0, errors.New("p2p port: found no port free for both TCP and UDP")
}

func writeFileAtomic(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
