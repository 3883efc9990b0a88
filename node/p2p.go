package node

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	record "github.com/libp2p/go-libp2p-record"

	"erg"
	"erg/appstore"
	"erg/p2p"
	"erg/store"
)

// blocksDir holds the node's IPFS blockstore (flatfs: one file per block,
// which kubo uses for the same job; it matched pebble on fetch speed,
// imports faster, and a refused install's blocks delete one by one).
const blocksDir = "blocks"

// p2pState is the node's libp2p side: the host and its DHT, which the
// store and federation run on, and the app store protocol on it.
type p2pState struct {
	host   *p2p.Host
	store  *appstore.Store
	joined chan struct{} // closed once the host is in the network
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startP2P starts the libp2p host, the DHT and the store, and rejoins the
// network in the background.
func (n *Node) startP2P(ctx context.Context) error {
	log := n.log.With("subsystem", "p2p")
	listen := n.cfg.P2PListen
	if len(listen) == 0 {
		listen = p2p.AllInterfaces
	}
	h, err := p2p.New(ctx, p2p.Config{
		Key:        n.key,
		Listen:     listen,
		PortFile:   filepath.Join(n.cfg.DataDir, p2pPortFile),
		Bootstrap:  n.cfg.Bootstrap,
		Relays:     n.cfg.Relays,
		BlocksDir:  filepath.Join(n.cfg.DataDir, blocksDir),
		Validators: record.NamespacedValidator{appstore.ListingNamespace: appstore.ListingValidator{}},
		Log:        log,
	})
	if err != nil {
		return err
	}
	st := &p2pState{host: h, store: appstore.NewStore(h, log), joined: make(chan struct{})}
	n.p2p = st
	if n.store, err = store.New(ctx, store.Config{
		Store:      st.store,
		DB:         n.db,
		Installer:  n.installer,
		MaxPackage: maxPackageSize,
		Log:        n.log,
		Joined:     st.joined,
	}); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	st.wg.Go(func() { n.joinP2P(bg) })
	log.Info("p2p running", "peer", h.ID(), "addrs", h.Addrs())
	return nil
}

// joinP2P joins the network, retrying while no bootstrap peer answers,
// and then lets the store announce what this node serves.
func (n *Node) joinP2P(ctx context.Context) {
	h := n.p2p.host
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		err := h.Bootstrap(ctx)
		if err == nil {
			break
		}
		n.log.Warn("p2p bootstrap failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	close(n.p2p.joined)
}

func (n *Node) stopP2P() {
	if n.p2p == nil {
		return
	}
	n.store.Close()
	if n.p2p.cancel != nil {
		n.p2p.cancel()
	}
	n.p2p.wg.Wait()
	n.p2p.host.Close()
}

// p2pStatus adds the libp2p side to a status.
func (n *Node) p2pStatus(s *erg.Status) {
	if n.p2p == nil {
		return
	}
	h := n.p2p.host
	s.PeerID = h.ID().String()
	s.P2PAddrs = h.Addrs()
	s.Peers = h.Peers()
	s.RoutingTable = h.RoutingTableSize()
	r := h.Reachability()
	s.Reachability, s.ReachabilityText, s.ReachableAddrs = r.Kind, r.Describe(), r.Addrs
}

// P2PAddrs are the node's libp2p multiaddrs, for others to bootstrap from.
func (n *Node) P2PAddrs() []string {
	if n.p2p == nil {
		return nil
	}
	return n.p2p.host.Addrs()
}
