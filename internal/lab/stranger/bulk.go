package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"erg/p2p"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Bulk is the raw libp2p stream the download benchmarks set beside a
// friend's grain: plain hosts in the same namespaces as the erg nodes,
// behind the same routers, on the same transports (TCP and QUIC, yamux,
// Noise), with erg's own relay limits, moving bytes with nothing of erg's
// on top. Three roles, one process each:
//
//   - "relay": a circuit relay with erg's friends' limits
//     (p2p.RelayResources), in R's namespace; it admits only the two
//     benchmark hosts it is told of (Allow).
//   - "serve": a host that answers bulkProtocol with as many bytes as it
//     is asked for (at most maxBulk); it asks its router for a port mapping
//     (PortMap, as erg nodes do) or reserves a slot on Relay.
//   - "fetch": a host that connects to Server (directly, or through the
//     relay when the address is a circuit, then, with Punch, over the
//     connection the hole punch made) and downloads Bytes, Runs times.
//
// relay and serve print one JSON line (BulkReady) once they can be reached,
// then run until they are stopped; fetch prints a BulkReport.
type Bulk struct {
	Role      string `json:"role"`
	Allow     []byte `json:"allow,omitempty"`     // relay: the seeds of the hosts it relays for
	PortMap   bool   `json:"portMap,omitempty"`   // serve: wait for the router's mapping
	Relay     string `json:"relay,omitempty"`     // serve: reserve on this relay (with /p2p/<id>)
	Server    string `json:"server,omitempty"`    // fetch: the server's address (with /p2p/<id>)
	Punch     bool   `json:"punch,omitempty"`     // serve, fetch: hole punching on; fetch waits for a direct connection
	Transport string `json:"transport,omitempty"` // fetch: "tcp" or "quic", for the report
	Bytes     int64  `json:"bytes,omitempty"`
	Runs      int    `json:"runs,omitempty"`
	Seed      byte   `json:"seed,omitempty"` // the identity, so the relay can be told ids in advance
}

// BulkReady is what relay and serve print once reachable.
type BulkReady struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"` // with /p2p/<id>; the mapped ones for PortMap
}

// BulkReport is what fetch prints: each run's seconds, and the
// connection's remote address (which says the transport and the path).
type BulkReport struct {
	Seconds []float64 `json:"seconds"`
	Via     string    `json:"via"`
}

const (
	bulkProtocol = "/erg-lab/bulk/1"
	// maxBulk bounds one request, so a stray client cannot make a server
	// send for ever.
	maxBulk = 1 << 30
)

// bulkKey is the identity of the bulk host made with seed.
func bulkKey(seed byte) (crypto.PrivKey, error) {
	var s [ed25519.SeedSize]byte
	s[0] = seed
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
}

func bulk(b Bulk) error {
	switch b.Role {
	case "relay":
		return bulkRelay(b)
	case "serve":
		return bulkServe(b)
	case "fetch":
		return bulkFetch(b)
	}
	return fmt.Errorf("bulk role %q: want relay, serve or fetch", b.Role)
}

// bulkHost is a host listening on every interface of its namespace over
// TCP and QUIC, as a plain `erg run` does.
func bulkHost(seed byte, opts ...libp2p.Option) (host.Host, error) {
	sk, err := bulkKey(seed)
	if err != nil {
		return nil, err
	}
	return libp2p.New(append([]libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableMetrics(),
	}, opts...)...)
}

type allowList map[peer.ID]bool

func (a allowList) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return a[p] }
func (a allowList) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	return a[src] && a[dest]
}

func bulkRelay(b Bulk) error {
	allow := allowList{}
	for _, seed := range b.Allow {
		sk, err := bulkKey(seed)
		if err != nil {
			return err
		}
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			return err
		}
		allow[id] = true
	}
	// R is on the public bridge: the relay serves at once rather than
	// after AutoNAT, which this host does not run.
	h, err := bulkHost(b.Seed, libp2p.ForceReachabilityPublic(),
		libp2p.EnableRelayService(relayv2.WithResources(p2p.RelayResources()), relayv2.WithACL(allow)))
	if err != nil {
		return err
	}
	defer h.Close()
	if err := ready(h, h.Addrs()); err != nil {
		return err
	}
	waitSignal()
	return nil
}

func bulkServe(b Bulk) error {
	opts := []libp2p.Option{libp2p.EnableRelay()}
	if b.Punch {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if b.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	h, err := bulkHost(b.Seed, opts...)
	if err != nil {
		return err
	}
	defer h.Close()
	h.SetStreamHandler(bulkProtocol, serveBulk)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var addrs []ma.Multiaddr
	switch {
	case b.Relay != "":
		relay, err := peer.AddrInfoFromString(b.Relay)
		if err != nil {
			return fmt.Errorf("relay address: %w", err)
		}
		if err := h.Connect(ctx, *relay); err != nil {
			return fmt.Errorf("connect to the relay: %w", err)
		}
		if _, err := client.Reserve(ctx, h, *relay); err != nil {
			return fmt.Errorf("reserve on the relay: %w", err)
		}
		if b.Punch {
			if err := awaitPunchable(ctx, h); err != nil {
				return err
			}
		}
		for _, a := range relay.Addrs {
			addrs = append(addrs, a.Encapsulate(ma.StringCast("/p2p/"+relay.ID.String()+"/p2p-circuit")))
		}
	case b.PortMap:
		// The router's mapping shows as a public address beside the LAN's.
		for ctx.Err() == nil && len(addrs) == 0 {
			for _, a := range h.Addrs() {
				if manet.IsPublicAddr(a) {
					addrs = append(addrs, a)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(addrs) == 0 {
			return fmt.Errorf("no port mapping from the router: addresses %v", h.Addrs())
		}
	default:
		addrs = h.Addrs()
	}
	if err := ready(h, addrs); err != nil {
		return err
	}
	waitSignal()
	return nil
}

// serveBulk answers one request: an 8-byte big-endian count, then that
// many bytes.
func serveBulk(s network.Stream) {
	defer s.Close()
	var hdr [8]byte
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		s.Reset()
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[:]))
	if n > maxBulk {
		s.Reset()
		return
	}
	buf := make([]byte, 256<<10)
	for n > 0 {
		k, err := s.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return
		}
		n -= int64(k)
	}
}

func bulkFetch(b Bulk) error {
	ai, err := peer.AddrInfoFromString(b.Server)
	if err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	if b.Bytes <= 0 || b.Bytes > maxBulk || b.Runs <= 0 {
		return fmt.Errorf("bytes %d, runs %d: want 1 to %d bytes, at least one run", b.Bytes, b.Runs, maxBulk)
	}
	// No hole punching unless asked: the path measured is the one asked for.
	opts := []libp2p.Option{libp2p.EnableRelay()}
	if b.Punch {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	h, err := bulkHost(b.Seed, opts...)
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if b.Punch {
		// Learn a public address from the relay first: until it has one,
		// the host does not answer the punch the server starts at once.
		relay, _ := ma.SplitFunc(ai.Addrs[0], func(c ma.Component) bool { return c.Code() == ma.P_CIRCUIT })
		rai, err := peer.AddrInfoFromP2pAddr(relay)
		if err != nil {
			return fmt.Errorf("relay of %s: %w", b.Server, err)
		}
		if err := h.Connect(ctx, *rai); err != nil {
			return fmt.Errorf("connect to the relay: %w", err)
		}
		if err := awaitPunchable(ctx, h); err != nil {
			return err
		}
	}
	if err := h.Connect(network.WithAllowLimitedConn(ctx, "bench"), *ai); err != nil {
		return fmt.Errorf("connect to %s: %w", b.Server, err)
	}
	if b.Punch {
		// The server punches when the relayed connection opens; a stream
		// takes the direct connection once there is one.
		direct := func() bool {
			for _, c := range h.Network().ConnsToPeer(ai.ID) {
				if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT); err != nil {
					return true
				}
			}
			return false
		}
		for start := time.Now(); !direct(); time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return errors.New("no direct connection 30 s after the relayed one: the hole punch failed")
			}
		}
	}
	var rep BulkReport
	for range b.Runs {
		s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "bench"), ai.ID, bulkProtocol)
		if err != nil {
			return fmt.Errorf("open a stream: %w", err)
		}
		rep.Via = s.Conn().RemoteMultiaddr().String()
		start := time.Now()
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(b.Bytes))
		if _, err := s.Write(hdr[:]); err != nil {
			return err
		}
		got, err := io.Copy(io.Discard, s)
		if err != nil || got != b.Bytes {
			return fmt.Errorf("download: %d of %d bytes: %v", got, b.Bytes, err)
		}
		rep.Seconds = append(rep.Seconds, time.Since(start).Seconds())
		s.Close()
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// awaitPunchable waits until h answers hole punches: libp2p starts the
// protocol once the host knows a public address of its own (here, the
// one the relay observed).
func awaitPunchable(ctx context.Context, h host.Host) error {
	for !slices.Contains(h.Mux().Protocols(), holepunch.Protocol) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no public address to punch from: %v", h.Addrs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func ready(h host.Host, addrs []ma.Multiaddr) error {
	r := BulkReady{ID: h.ID().String()}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, a.String()+"/p2p/"+h.ID().String())
	}
	slices.Sort(r.Addrs)
	if len(r.Addrs) == 0 {
		return errors.New("no address to be reached at")
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func waitSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
