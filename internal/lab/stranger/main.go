// Command stranger is a libp2p host that no one in the lab befriended: it
// runs in the lab's stranger namespace, tries what a stranger on the
// internet could try against erg nodes, and prints what happened as JSON
// for the lab's tests to assert on. It takes one argument, a JSON Plan.
//
// It is a plain go-libp2p host, not an erg node, so that nothing erg does
// for its own peers (friends, invites) colours what a stranger gets. For
// the same reason it is also the benchmarks' raw libp2p baseline: its ping
// mode measures a path's round trip, its bulk mode (bulk.go) a path's
// stream throughput.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
)

// Plan is what the stranger tries: to reserve a slot on the relay, and,
// for each target, to reach it through the relay, then by any address it
// advertises, and to open each protocol on it.
type Plan struct {
	Relay     string   `json:"relay"` // the relay's address, with /p2p/<id>
	Targets   []Target `json:"targets"`
	Protocols []string `json:"protocols"`
	// Ping, if set, is all it does: libp2p pings (which any peer answers)
	// to each address, the raw round trip of a path for the benchmarks.
	Ping      []string `json:"ping,omitempty"` // addresses with /p2p/<id>
	PingCount int      `json:"pingCount,omitempty"`
	// Bulk, if set, is all it does: one part of the raw stream baseline
	// of the download benchmarks (bulk.go).
	Bulk *Bulk `json:"bulk,omitempty"`
}

// Target is a node to try, with the addresses it advertises.
type Target struct {
	Name  string   `json:"name"`
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

// Report is what happened. An empty error is success.
type Report struct {
	RelayConnect string         `json:"relayConnect"` // connecting to the relay itself
	Reserve      string         `json:"reserve"`      // a relay reservation on it
	Targets      []TargetReport `json:"targets"`
	// Pings are the round trips to each Ping address, in microseconds.
	Pings map[string][]int64 `json:"pings,omitempty"`
}

// TargetReport is what happened with one target.
type TargetReport struct {
	Name    string `json:"name"`
	Circuit string `json:"circuit"` // a connection through the relay
	Connect string `json:"connect"` // a connection by any advertised address
	Via     string `json:"via,omitempty"`
	// Streams says, per protocol, "open" when the target held the stream
	// open (it accepted it), else the error that ended it.
	Streams map[string]string `json:"streams,omitempty"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stranger PLAN-JSON")
		os.Exit(2)
	}
	var plan Plan
	if err := json.Unmarshal([]byte(os.Args[1]), &plan); err != nil {
		fmt.Fprintln(os.Stderr, "stranger: bad plan:", err)
		os.Exit(2)
	}
	if plan.Bulk != nil {
		if err := bulk(*plan.Bulk); err != nil {
			fmt.Fprintln(os.Stderr, "stranger:", err)
			os.Exit(1)
		}
		return
	}
	run := run
	if len(plan.Ping) > 0 {
		run = pings
	}
	rep, err := run(plan)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stranger:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(rep)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func run(plan Plan) (Report, error) {
	var rep Report
	relay, err := peer.AddrInfoFromString(plan.Relay)
	if err != nil {
		return rep, fmt.Errorf("relay address: %w", err)
	}
	// A dialling host only: a stranger needs no listener to ask for a
	// reservation or a circuit. (NoListenAddrs turns the relay transport
	// off unless it is asked for.)
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.EnableRelay())
	if err != nil {
		return rep, err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	rep.RelayConnect = errText(connect(ctx, h.Connect, *relay))
	_, err = client.Reserve(ctx, h, *relay)
	rep.Reserve = errText(err)

	for _, t := range plan.Targets {
		id, err := peer.Decode(t.ID)
		if err != nil {
			return rep, fmt.Errorf("target %s: %w", t.Name, err)
		}
		tr := TargetReport{Name: t.Name}
		circuit, err := ma.NewMultiaddr(plan.Relay + "/p2p-circuit")
		if err != nil {
			return rep, err
		}
		// Through the relay only: the peerstore holds no other address yet.
		tr.Circuit = errText(connect(ctx, h.Connect, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{circuit}}))
		h.Network().ClosePeer(id)
		h.Peerstore().ClearAddrs(id)
		ai := peer.AddrInfo{ID: id}
		for _, s := range t.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return rep, fmt.Errorf("target %s: %w", t.Name, err)
			}
			ai.Addrs = append(ai.Addrs, a)
		}
		tr.Connect = errText(connect(ctx, h.Connect, ai))
		if tr.Connect == "" {
			if cs := h.Network().ConnsToPeer(id); len(cs) > 0 {
				tr.Via = cs[0].RemoteMultiaddr().String()
			}
			tr.Streams = map[string]string{}
			for _, p := range plan.Protocols {
				tr.Streams[p] = tryStream(ctx, h.NewStream, id, protocol.ID(p))
			}
		}
		h.Peerstore().AddAddrs(id, ai.Addrs, peerstore.TempAddrTTL)
		rep.Targets = append(rep.Targets, tr)
	}
	return rep, nil
}

func connect(ctx context.Context, dial func(context.Context, peer.AddrInfo) error, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return dial(network.WithAllowLimitedConn(ctx, "stranger"), ai)
}

// tryStream opens a stream and waits for what the target does with it,
// sending nothing: a node that accepts it waits for the stranger to speak
// (the read times out, "open"); one that refuses resets it at once.
func tryStream(ctx context.Context, open func(context.Context, peer.ID, ...protocol.ID) (network.Stream, error), id peer.ID, p protocol.ID) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := open(network.WithAllowLimitedConn(ctx, "stranger"), id, p)
	if err != nil {
		return err.Error()
	}
	defer st.Reset()
	st.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = st.Read(make([]byte, 1))
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "open"
	}
	if err == nil {
		return "open" // it even spoke first
	}
	return err.Error()
}

// pings measures the raw libp2p round trip to each address: a connection,
// then PingCount pings on it.
func pings(plan Plan) (Report, error) {
	rep := Report{Pings: map[string][]int64{}}
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		return rep, err
	}
	defer h.Close()
	for _, s := range plan.Ping {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return rep, fmt.Errorf("ping %s: %w", s, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := h.Connect(ctx, *ai); err != nil {
			cancel()
			return rep, fmt.Errorf("connect to %s: %w", s, err)
		}
		results := ping.Ping(ctx, h, ai.ID)
		var rtts []int64
		for len(rtts) < plan.PingCount {
			r := <-results
			if r.Error != nil {
				cancel()
				return rep, fmt.Errorf("ping %s: %w", s, r.Error)
			}
			rtts = append(rtts, r.RTT.Microseconds())
		}
		cancel()
		rep.Pings[s] = rtts
	}
	return rep, nil
}
