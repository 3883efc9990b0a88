// Package friends is the node's friends: other nodes it trusts to exchange
// shares with. It makes and redeems invites, keeps the friends table,
// keeps connections to friends open and protected from the connection
// manager, finds friends again through the DHT when their addresses
// change, and holds the Cap'n Proto connection to each.
package friends

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"erg"
	"erg/accounts"
	"erg/db"
	"erg/fed"
	"erg/p2p"
)

const (
	// InviteTTL is how long a friend invite code works.
	InviteTTL = 24 * time.Hour
	// streamTimeout bounds one friend request exchange.
	streamTimeout = 15 * time.Second
	// checkInterval is how often the friend loop dials friends it is not
	// connected to, so their status is current and shares reach them.
	checkInterval = 15 * time.Second
	// protectTag keeps friends' connections from the connection manager's
	// trimming.
	protectTag = "erg-friend"
	// maxAddrs bounds the addresses sent and kept for one node.
	maxAddrs = 16
)

// Shares is the server side this node offers its friends on their Cap'n
// Proto connections: the grains shared between the nodes. It is
// fed.Shares less Unfriend, which the Service answers itself.
type Shares interface {
	Restore(ctx context.Context, peer, user string, token []byte, role string) (*fed.GrainServer, fed.ShareInfo, error)
	Offer(ctx context.Context, peer string, o fed.Offer) error
	Withdraw(ctx context.Context, peer string, hash []byte) error
}

// Config is what a Service needs. Host, DB and Shares are required.
type Config struct {
	Host *p2p.Host
	DB   *sql.DB
	// Accounts gives the owner's username, the node's name when Name is
	// empty; nil skips it.
	Accounts *accounts.Service
	// Name is what the node calls itself to friends; empty picks the
	// owner's username, else the hostname, else "erg".
	Name string
	Log  *slog.Logger // default: discard
	// Shares serves friends' calls (the node's: a fedgrains.Service). They
	// may arrive before New returns.
	Shares Shares
	// Forgetting, if set, is called as a friend is forgotten, before its
	// row is deleted (and with it, by ON DELETE CASCADE, the shares made
	// for it and the grains it shared). The func it returns, if not nil,
	// is called once they are gone; an error keeps the friend.
	Forgetting func(ctx context.Context, peer string) (forgotten func(), err error)
}

// Friend is a friend as stored.
type Friend struct {
	Peer, Name string
	Addrs      []string
	Added      time.Time
}

// Service is the node's friends. Its methods are safe to call
// concurrently.
type Service struct {
	host       *p2p.Host
	db         *sql.DB
	log        *slog.Logger
	name       string
	shares     Shares
	forgetting func(ctx context.Context, peer string) (func(), error)
	limiter    *fed.RateLimiter
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu sync.Mutex
	// out holds the connection this node opened to each friend, used for
	// its own calls (restore, offer, withdraw).
	out map[peer.ID]*Conn
	// in holds connections friends opened to this node.
	in map[*rpc.Conn]peer.ID
}

// New serves the friend and Cap'n Proto protocols on cfg.Host and keeps
// friends connected until Close.
func New(ctx context.Context, cfg Config) (*Service, error) {
	name, err := nodeName(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Service{
		host:       cfg.Host,
		db:         cfg.DB,
		log:        cfg.Log,
		name:       name,
		shares:     cfg.Shares,
		forgetting: cfg.Forgetting,
		limiter:    fed.NewRateLimiter(5, 30),
		out:        map[peer.ID]*Conn{},
		in:         map[*rpc.Conn]peer.ID{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	fs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	h := s.host.Libp2p()
	for _, f := range fs {
		if id, err := peer.Decode(f.Peer); err == nil {
			h.ConnManager().Protect(id, protectTag)
		}
	}
	// The host relays for friends only, and looks among them for relays.
	s.host.SetFriends(s)
	h.SetStreamHandler(fed.FriendProtocol, s.serveFriendRequest)
	h.SetStreamHandler(fed.CapnpProtocol, s.serveCapnp)
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(bg)
	}()
	s.log.Info("federation running", "name", name)
	return s, nil
}

// nodeName decides what the node calls itself to friends.
func nodeName(ctx context.Context, cfg Config) (string, error) {
	if cfg.Name != "" {
		if err := fed.CheckNodeName(cfg.Name); err != nil {
			return "", fmt.Errorf("--name: %w", err)
		}
		return cfg.Name, nil
	}
	var owner string
	if cfg.Accounts != nil {
		if u, err := cfg.Accounts.Owner(ctx); err == nil {
			owner = u.Username
		}
	}
	host, _ := os.Hostname()
	for _, c := range []string{owner, host} {
		if fed.CheckNodeName(c) == nil {
			return c, nil
		}
	}
	return "erg", nil
}

// Close stops serving the protocols and the friend loop, and closes every
// connection with friends.
func (s *Service) Close() {
	h := s.host.Libp2p()
	h.RemoveStreamHandler(fed.FriendProtocol)
	h.RemoveStreamHandler(fed.CapnpProtocol)
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	var conns []*rpc.Conn
	for _, c := range s.out {
		conns = append(conns, c.conn)
	}
	for c := range s.in {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Name is what this node calls itself to its friends.
func (s *Service) Name() string { return s.name }

// List returns every friend, by name.
func (s *Service) List(ctx context.Context) ([]Friend, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT peer, name, addrs, added_at FROM friends ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Friend
	for rows.Next() {
		var f Friend
		var addrs string
		var added int64
		if err := rows.Scan(&f.Peer, &f.Name, &addrs, &added); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(addrs), &f.Addrs)
		f.Added = time.Unix(added, 0)
		out = append(out, f)
	}
	return out, rows.Err()
}

// ByPeer returns a friend by its peer id, or an error if p is no friend.
func (s *Service) ByPeer(ctx context.Context, p string) (Friend, error) {
	var f Friend
	var addrs string
	var added int64
	err := s.db.QueryRowContext(ctx, `SELECT peer, name, addrs, added_at FROM friends WHERE peer = ?`, p).Scan(&f.Peer, &f.Name, &addrs, &added)
	if err != nil {
		return f, err
	}
	json.Unmarshal([]byte(addrs), &f.Addrs)
	f.Added = time.Unix(added, 0)
	return f, nil
}

// ByName returns a friend by name; one by no such name is erg.ErrNotFound.
func (s *Service) ByName(ctx context.Context, name string) (Friend, error) {
	var p string
	err := s.db.QueryRowContext(ctx, `SELECT peer FROM friends WHERE name = ?`, strings.TrimSpace(name)).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return Friend{}, fmt.Errorf("%w: no friend named %q (see erg friend ls)", erg.ErrNotFound, name)
	}
	if err != nil {
		return Friend{}, err
	}
	return s.ByPeer(ctx, p)
}

// IsFriend tells whether p is a friend.
func (s *Service) IsFriend(p peer.ID) bool {
	var one int
	err := s.db.QueryRow(`SELECT 1 FROM friends WHERE peer = ?`, p.String()).Scan(&one)
	return err == nil
}

// FriendPeers are the friends with their stored addresses, for the host
// to look for relays among.
func (s *Service) FriendPeers() []peer.AddrInfo {
	fs, _ := s.List(context.Background())
	var out []peer.AddrInfo
	for _, f := range fs {
		id, err := peer.Decode(f.Peer)
		if err != nil {
			continue
		}
		ai := peer.AddrInfo{ID: id}
		for _, a := range f.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				if pi, err := peer.AddrInfoFromP2pAddr(m); err == nil && pi.ID == id {
					ai.Addrs = append(ai.Addrs, pi.Addrs...)
				} else if err != nil {
					ai.Addrs = append(ai.Addrs, m)
				}
			}
		}
		out = append(out, ai)
	}
	return out
}

// Reachability tells how other nodes reach this one.
func (s *Service) Reachability() p2p.Reach { return s.host.Reachability() }

// Names maps friends' peer ids to their names.
func (s *Service) Names(ctx context.Context) map[string]string {
	out := map[string]string{}
	fs, _ := s.List(ctx)
	for _, f := range fs {
		out[f.Peer] = f.Name
	}
	return out
}

func (s *Service) toAPI(f Friend) erg.Friend {
	out := erg.Friend{Name: f.Name, Peer: f.Peer, Addrs: f.Addrs, Added: f.Added}
	if id, err := peer.Decode(f.Peer); err == nil {
		out.Online = s.host.Libp2p().Network().Connectedness(id) == network.Connected
		out.Path = s.host.ConnPath(id)
	}
	return out
}

// Friends lists the friends with whether each is online: every signed-in
// user sees them, to share grains with them.
func (s *Service) Friends(ctx context.Context, who erg.User) ([]erg.Friend, error) {
	fs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]erg.Friend, 0, len(fs))
	for _, f := range fs {
		out = append(out, s.toAPI(f))
	}
	return out, nil
}

// Record stores a friend, choosing a free name if another friend already
// has this one, and protects its connections. A friend already stored
// keeps its name and takes the new addresses.
func (s *Service) Record(ctx context.Context, id peer.ID, name string, addrs []string) (Friend, error) {
	b, _ := json.Marshal(addrs)
	now := time.Now()
	base := name
	for i := 2; ; i++ {
		_, err := s.db.ExecContext(ctx, `INSERT INTO friends (peer, name, addrs, added_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (peer) DO UPDATE SET addrs = excluded.addrs`, id.String(), name, string(b), now.Unix())
		if err == nil {
			break
		}
		if !db.UniqueViolated(err) || i > 20 {
			return Friend{}, fmt.Errorf("record friend: %w", err)
		}
		suffix := fmt.Sprintf("-%d", i)
		name = base[:min(len(base), 64-len(suffix))] + suffix
	}
	s.host.Libp2p().ConnManager().Protect(id, protectTag)
	return s.ByPeer(ctx, id.String())
}

// Remove forgets the friend called name. Its node is told, if it can be
// reached, and forgets this one too. Owner only.
func (s *Service) Remove(ctx context.Context, who erg.User, name string) error {
	if err := accounts.RequireOwner(who); err != nil {
		return err
	}
	f, err := s.ByName(ctx, name)
	if err != nil {
		return err
	}
	id, _ := peer.Decode(f.Peer)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = s.Call(tctx, id, func(gw fed.Gateway) error { return fed.SendUnfriend(tctx, gw) })
	cancel()
	if err != nil {
		s.log.Info("friend not told it was removed", "name", f.Name, "err", err)
	}
	if err := s.forget(ctx, f); err != nil {
		return err
	}
	s.closeConns(id)
	return nil
}

// Unfriend forgets the friend with peer id p, which ended the friendship;
// p being no friend is no error. The connection it came on is left to
// that node to close.
func (s *Service) Unfriend(ctx context.Context, p string) error {
	f, err := s.ByPeer(ctx, p)
	if err != nil {
		return nil
	}
	return s.forget(ctx, f)
}

func (s *Service) forget(ctx context.Context, f Friend) error {
	id, _ := peer.Decode(f.Peer)
	var forgotten func()
	if s.forgetting != nil {
		var err error
		if forgotten, err = s.forgetting(ctx, f.Peer); err != nil {
			return err
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM friends WHERE peer = ?`, f.Peer); err != nil {
		return fmt.Errorf("remove friend: %w", err)
	}
	if forgotten != nil {
		forgotten()
	}
	s.host.Libp2p().ConnManager().Unprotect(id, protectTag)
	s.log.Info("friend removed", "name", f.Name, "peer", f.Peer)
	return nil
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// NameOf is what the owner calls a friend's node, or its peer id p when
// it is no friend.
func (s *Service) NameOf(ctx context.Context, p string) string {
	if f, err := s.ByPeer(ctx, p); err == nil {
		return f.Name
	}
	return p
}
