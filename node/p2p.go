package node

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	record "github.com/libp2p/go-libp2p-record"

	"erg"
	"erg/appstore"
	"erg/p2p"
)

// blocksDir holds the node's IPFS blockstore (flatfs: one file per block,
// which kubo uses for the same job; it matched pebble on fetch speed,
// imports faster, and a refused install's blocks delete one by one).
const blocksDir = "blocks"

// republishInterval is how often listings go into the DHT again; DHT
// records expire after 48 hours.
const republishInterval = 12 * time.Hour

type p2pState struct {
	host   *p2p.Host
	store  *appstore.Store
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startP2P starts the libp2p host, the DHT and the store, and rejoins the
// network in the background.
func (n *Node) startP2P(ctx context.Context) error {
	log := n.log.With("subsystem", "p2p")
	h, err := p2p.New(ctx, p2p.Config{
		Key:        n.key,
		Listen:     n.cfg.P2PListen,
		Bootstrap:  n.cfg.Bootstrap,
		BlocksDir:  filepath.Join(n.cfg.DataDir, blocksDir),
		Validators: record.NamespacedValidator{appstore.ListingNamespace: appstore.ListingValidator{}},
		Log:        log,
	})
	if err != nil {
		return err
	}
	st := &p2pState{host: h, store: appstore.NewStore(h, log)}
	n.p2p = st
	if err := n.loadPublished(ctx); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		n.p2pLoop(bg)
	}()
	log.Info("p2p running", "peer", h.ID(), "addrs", h.Addrs())
	return nil
}

// p2pLoop joins the network (retrying while no bootstrap peer answers),
// then announces what this node serves, now and every republishInterval.
func (n *Node) p2pLoop(ctx context.Context) {
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
	for {
		if h.RoutingTableSize() > 0 {
			h.RefreshRoutingTable(ctx)
		}
		n.reannounce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(republishInterval):
		}
	}
}

// reannounce provides every package this node serves and republishes
// its listings.
func (n *Node) reannounce(ctx context.Context) {
	rows, err := n.db.QueryContext(ctx, `SELECT cid FROM store_provided`)
	if err != nil {
		return
	}
	var keys []cid.Cid
	for rows.Next() {
		var s string
		if rows.Scan(&s) == nil {
			if c, err := cid.Decode(s); err == nil {
				keys = append(keys, c)
			}
		}
	}
	rows.Close()
	for _, c := range keys {
		if err := n.p2p.host.Provide(ctx, c); err != nil && ctx.Err() == nil {
			n.log.Debug("provide", "cid", c, "err", err)
		}
	}
	n.p2p.store.Republish(ctx)
}

// loadPublished serves this node's published listings again after a
// restart.
func (n *Node) loadPublished(ctx context.Context) error {
	rows, err := n.db.QueryContext(ctx, `SELECT record FROM store_published`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return err
		}
		n.p2p.store.Serve(rec)
	}
	return rows.Err()
}

func (n *Node) stopP2P() {
	if n.p2p == nil {
		return
	}
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
}

// P2PAddrs are the node's libp2p multiaddrs, for others to bootstrap from.
func (n *Node) P2PAddrs() []string {
	if n.p2p == nil {
		return nil
	}
	return n.p2p.host.Addrs()
}
