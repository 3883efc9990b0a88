// Package p2p is erg's libp2p layer: a host with the node's identity, a
// private Kademlia DHT, an on-disk blockstore served and fetched over
// bitswap, and small helpers for length-limited stream protocols. It knows
// nothing of apps or packages; callers pass record validators in.
package p2p

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	flatfs "github.com/ipfs/go-ds-flatfs"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// ProtocolPrefix puts erg's DHT on its own protocol (/erg/kad/1.0.0), apart
// from the public IPFS DHT.
const ProtocolPrefix = "/erg"

// Config sets up a Host.
type Config struct {
	// Key is the node's identity.
	Key ed25519.PrivateKey
	// Listen are multiaddrs to listen on; empty means Loopback.
	Listen []string
	// PortFile, if set, keeps the node's libp2p port: a port 0 in Listen
	// becomes the port kept there (chosen once, TCP and UDP alike), so the
	// addresses friends stored survive restarts. Empty leaves port 0 to
	// the kernel.
	PortFile string
	// Relays are full multiaddrs (with /p2p/<id>) of relays the owner
	// configured: when the node is not reachable from the internet, it
	// reserves a slot on them (and on friends that relay) and advertises
	// the relayed addresses. Used only when listening beyond loopback.
	Relays []string
	// Bootstrap are full multiaddrs (with /p2p/<id>) of peers to join the
	// DHT through.
	Bootstrap []string
	// BlocksDir holds the on-disk blockstore; empty means an in-memory one.
	BlocksDir string
	// Validators check DHT records, by namespace (the first path element of
	// the key). They replace the public DHT's pk/ipns validators.
	Validators record.NamespacedValidator
	// ServeBlock, if set, decides whether a peer may fetch a block from
	// this node; nil serves every block the node holds.
	ServeBlock func(p peer.ID, c cid.Cid) bool
	// WrapBlockstore, if set, wraps the blockstore, as a test counting
	// what is written to it does.
	WrapBlockstore func(blockstore.Blockstore) blockstore.Blockstore
	Log            *slog.Logger
}

// Host is a running libp2p node with its DHT and block exchange.
type Host struct {
	h      host.Host
	dht    *dht.IpfsDHT
	bs     blockstore.Blockstore
	bswap  *bitswap.Bitswap
	bsvc   blockservice.BlockService
	log    *slog.Logger
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// internet is set when the host listens beyond loopback and so runs
	// port mapping, AutoNAT, relaying and hole punching.
	internet bool
	friends  atomic.Pointer[Friends]
	maps     *mappingState

	provMu   sync.Mutex
	provided map[cid.Cid]bool // keys the reprovide loop announces again
	closers  []func() error
}

// New starts a host. It listens at once; Bootstrap connects to peers.
func New(ctx context.Context, cfg Config) (_ *Host, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = Loopback
	}
	listen, err := parseListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	listen, port, moved, err := stablePorts(listen, cfg.PortFile)
	if err != nil {
		return nil, err
	}
	if moved {
		cfg.Log.Warn("the kept libp2p port is taken by another program; moved to a new one (friends find the node again through the DHT)", "port", port, "file", cfg.PortFile)
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("p2p identity: %w", err)
	}
	cm, err := connmgr.NewConnManager(100, 400, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	rm, err := resourceManager()
	if err != nil {
		return nil, err
	}
	relays, err := parseRelays(cfg.Relays)
	if err != nil {
		return nil, err
	}
	x := &Host{log: cfg.Log, cfg: cfg, provided: map[cid.Cid]bool{}, internet: BeyondLoopback(listen), maps: newMappingState()}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	hopts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrs(listen...),
		// Only the transports we mean: no websocket, webtransport or webrtc.
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableMetrics(),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.UserAgent("erg"),
	}
	if x.internet {
		hopts = append(hopts, x.internetOptions(relays)...)
	} else {
		// On loopback: no relay, port mapping, AutoNAT or hole punching,
		// so nothing reaches beyond the peers we are told about.
		hopts = append(hopts, libp2p.DisableRelay())
	}
	x.h, err = libp2p.New(hopts...)
	if err != nil {
		return nil, fmt.Errorf("p2p host: %w", err)
	}
	x.closers = append(x.closers, x.h.Close)
	x.ctx, x.cancel = context.WithCancel(context.Background())

	vals := record.NamespacedValidator{"pk": record.PublicKeyValidator{}}
	for ns, v := range cfg.Validators {
		vals[ns] = v
	}
	x.dht, err = dht.New(x.h,
		dht.ProtocolPrefix(ProtocolPrefix),
		// A personal node is always on and reachable by its friends; in
		// auto mode it would wait for AutoNAT, which we never run.
		dht.Mode(dht.ModeServer),
		dht.Validator(vals),
		dht.BucketSize(20),
	)
	if err != nil {
		return nil, fmt.Errorf("p2p dht: %w", err)
	}
	x.closers = append(x.closers, x.dht.Close)

	if cfg.BlocksDir != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.BlocksDir), 0o700); err != nil {
			return nil, err
		}
		fds, err := flatfs.CreateOrOpen(cfg.BlocksDir, flatfs.NextToLast(2), false)
		if err != nil {
			return nil, fmt.Errorf("blockstore %s: %w", cfg.BlocksDir, err)
		}
		x.closers = append(x.closers, fds.Close)
		x.bs = blockstore.NewBlockstore(fds, blockstore.NoPrefix())
	} else {
		x.bs = blockstore.NewBlockstore(memBatching())
	}
	if cfg.WrapBlockstore != nil {
		x.bs = cfg.WrapBlockstore(x.bs)
	}
	x.bs = blockstore.NewIdStore(x.bs)
	opts := []bitswap.Option{
		bitswap.ProviderSearchDelay(100 * time.Millisecond),
	}
	if cfg.ServeBlock != nil {
		opts = append(opts, bitswap.WithPeerBlockRequestFilter(cfg.ServeBlock))
	}
	x.bswap = bitswap.New(x.ctx, bsnet.NewFromIpfsHost(x.h), x.dht, x.bs, opts...)
	x.closers = append(x.closers, x.bswap.Close)
	x.bsvc = blockservice.New(x.bs, x.bswap)
	x.h.SetStreamHandler(DAGProtocol, x.serveDAG)
	if x.internet {
		x.h.SetStreamHandler(DialBackProtocol, newDialBacker(x.ctx, x.friendsOf).serve)
		sub, err := x.subscribeMappings()
		if err != nil {
			return nil, fmt.Errorf("p2p event bus: %w", err)
		}
		x.wg.Add(2)
		go x.watchMappings(sub)
		go x.confirmMappings()
	}

	x.wg.Add(1)
	go x.reprovideLoop()
	return x, nil
}

func parseListen(addrs []string) ([]ma.Multiaddr, error) {
	seen := map[string]bool{}
	var out []ma.Multiaddr
	for _, s := range addrs {
		// The same quic address twice panics inside go-libp2p v0.49.
		if seen[s] {
			continue
		}
		seen[s] = true
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("p2p listen address %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// ourProtocols get more room than libp2p's defaults allow a single peer, so
// one busy friend fetching a package is not refused with "resource limit
// exceeded".
var ourProtocols = []protocol.ID{"/erg/kad/1.0.0", "/ipfs/bitswap/1.2.0", DAGProtocol}

func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	for _, p := range ourProtocols {
		limits.AddProtocolPeerLimit(p,
			rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 64 << 20},
			rcmgr.BaseLimitIncrease{})
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Scale(1<<30, 4096)))
}

// Close stops the host and everything on it.
func (x *Host) Close() error {
	if x.cancel != nil {
		x.cancel()
	}
	x.wg.Wait()
	var errs []error
	for i := len(x.closers) - 1; i >= 0; i-- {
		if err := x.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	x.closers = nil
	return errors.Join(errs...)
}

// ID is the host's peer id.
func (x *Host) ID() peer.ID { return x.h.ID() }

// Libp2p is the underlying host, for stream protocols.
func (x *Host) Libp2p() host.Host { return x.h }

// DHT is the host's Kademlia DHT.
func (x *Host) DHT() *dht.IpfsDHT { return x.dht }

// Blockstore holds the blocks this node serves.
func (x *Host) Blockstore() blockstore.Blockstore { return x.bs }

// BlockService reads blocks locally or over bitswap.
func (x *Host) BlockService() blockservice.BlockService { return x.bsvc }

// Addrs are the host's full multiaddrs, /p2p/<id> included, for others to
// bootstrap from.
func (x *Host) Addrs() []string {
	var out []string
	for _, a := range x.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+x.h.ID().String())
	}
	return out
}

// Peers is the number of peers connected now.
func (x *Host) Peers() int { return len(x.h.Network().Peers()) }

// RoutingTableSize is the number of peers in the DHT routing table.
func (x *Host) RoutingTableSize() int { return x.dht.RoutingTable().Size() }

// Bootstrap connects to the configured bootstrap peers (and any extra
// ones), then fills the routing table. It succeeds if at least one peer
// answered, or if there were none to ask.
func (x *Host) Bootstrap(ctx context.Context, extra ...string) error {
	addrs := append(append([]string{}, x.cfg.Bootstrap...), extra...)
	if len(addrs) == 0 {
		return nil
	}
	var errs []error
	ok := 0
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap address %q: %w (want /ip4/.../tcp/.../p2p/<peer id>)", s, err))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = x.Connect(cctx, *ai)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %s: %w", s, err))
			continue
		}
		ok++
	}
	if ok == 0 {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		x.log.Warn("bootstrap", "err", err)
	}
	return nil
}

// Connect dials a peer and waits until it is in the routing table, so the
// next DHT query can use it.
func (x *Host) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := x.h.Connect(ctx, ai); err != nil {
		return err
	}
	// Identify must finish before the DHT adds the peer.
	for x.dht.RoutingTable().Find(ai.ID) == "" {
		select {
		case <-ctx.Done():
			return fmt.Errorf("peer %s connected but never joined the routing table: %w", ai.ID, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// RefreshRoutingTable runs one DHT refresh and waits for it.
func (x *Host) RefreshRoutingTable(ctx context.Context) error {
	select {
	case err := <-x.dht.RefreshRoutingTable():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PutValue stores a record in the DHT; the validator for its namespace
// must accept it.
func (x *Host) PutValue(ctx context.Context, key string, val []byte) error {
	return x.dht.PutValue(ctx, key, val)
}

// GetValue finds the best record for key in the DHT.
func (x *Host) GetValue(ctx context.Context, key string) ([]byte, error) {
	v, err := x.dht.GetValue(ctx, key, dht.Quorum(3))
	if errors.Is(err, routing.ErrNotFound) {
		return nil, ErrNotFound
	}
	return v, err
}

// ErrNotFound is returned when the DHT has no record under a key.
var ErrNotFound = errors.New("not found in the DHT")
