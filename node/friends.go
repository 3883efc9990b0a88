package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"erg"
	"erg/fed"
	"erg/webui"
)

const (
	// friendInviteTTL is how long a friend invite code works.
	friendInviteTTL = 24 * time.Hour
	// friendStreamTimeout bounds one friend request exchange.
	friendStreamTimeout = 15 * time.Second
	// friendCheckInterval is how often the node dials friends it is not
	// connected to, so their status is current and shares reach them.
	friendCheckInterval = 15 * time.Second
	// protectTag keeps friends' connections from the connection manager's
	// trimming.
	protectTag = "erg-friend"
)

var _ webui.FriendsBackend = (*Node)(nil)

// fedState is the node's side of federation: its name, its friends'
// connections, and the grain capabilities live in either direction.
type fedState struct {
	name    string
	limiter *fed.RateLimiter
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu sync.Mutex
	// out holds the connection this node opened to each friend, used for
	// its own calls (restore, offer, withdraw).
	out map[peer.ID]*fedConn
	// in holds connections friends opened to this node.
	in map[*rpc.Conn]peer.ID
	// servers are live grain capabilities given to friends, by share id.
	servers map[string]map[*fed.GrainServer]struct{}
	// remote caches grains friends shared with this node, by local id.
	remote map[string]*remoteGrain
}

// fedConn is one Cap'n Proto connection to a friend's node.
type fedConn struct {
	conn *rpc.Conn
	gw   fed.Gateway
}

// nodeName decides what this node calls itself to friends.
func (n *Node) nodeName(ctx context.Context) (string, error) {
	if n.cfg.Name != "" {
		if err := fed.CheckNodeName(n.cfg.Name); err != nil {
			return "", fmt.Errorf("--name: %w", err)
		}
		return n.cfg.Name, nil
	}
	var owner string
	n.db.QueryRowContext(ctx, `SELECT username FROM users WHERE id = ?`, ownerID).Scan(&owner)
	for _, c := range []string{owner, hostname()} {
		if fed.CheckNodeName(c) == nil {
			return c, nil
		}
	}
	return "erg", nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// startFed serves the friend and Cap'n Proto protocols and keeps friends
// connected.
func (n *Node) startFed(ctx context.Context) error {
	name, err := n.nodeName(ctx)
	if err != nil {
		return err
	}
	st := &fedState{
		name:    name,
		limiter: fed.NewRateLimiter(5, 30),
		out:     map[peer.ID]*fedConn{},
		in:      map[*rpc.Conn]peer.ID{},
		servers: map[string]map[*fed.GrainServer]struct{}{},
		remote:  map[string]*remoteGrain{},
	}
	n.fed = st
	if err := n.loadRemoteGrains(ctx); err != nil {
		return err
	}
	h := n.p2p.host.Libp2p()
	h.SetStreamHandler(fed.FriendProtocol, n.serveFriendRequest)
	h.SetStreamHandler(fed.CapnpProtocol, n.serveCapnp)
	friends, err := n.listFriends(ctx)
	if err != nil {
		return err
	}
	for _, f := range friends {
		if id, err := peer.Decode(f.Peer); err == nil {
			h.ConnManager().Protect(id, protectTag)
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		n.friendLoop(bg)
	}()
	n.log.Info("federation running", "name", name)
	return nil
}

func (n *Node) stopFed() {
	st := n.fed
	if st == nil {
		return
	}
	if n.p2p != nil {
		h := n.p2p.host.Libp2p()
		h.RemoveStreamHandler(fed.FriendProtocol)
		h.RemoveStreamHandler(fed.CapnpProtocol)
	}
	if st.cancel != nil {
		st.cancel()
	}
	st.wg.Wait()
	st.mu.Lock()
	var conns []*rpc.Conn
	for _, c := range st.out {
		conns = append(conns, c.conn)
	}
	for c := range st.in {
		conns = append(conns, c)
	}
	st.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// NodeName implements webui.FriendsBackend.
func (n *Node) NodeName() string {
	if n.fed == nil {
		return ""
	}
	return n.fed.name
}

// friendRow is a friend as stored.
type friendRow struct {
	Peer, Name string
	Addrs      []string
	Added      time.Time
}

func (n *Node) listFriends(ctx context.Context) ([]friendRow, error) {
	rows, err := n.db.QueryContext(ctx, `SELECT peer, name, addrs, added_at FROM friends ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []friendRow
	for rows.Next() {
		var f friendRow
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

// friendByPeer returns a friend's row, or an error if p is no friend.
func (n *Node) friendByPeer(ctx context.Context, p string) (friendRow, error) {
	var f friendRow
	var addrs string
	var added int64
	err := n.db.QueryRowContext(ctx, `SELECT peer, name, addrs, added_at FROM friends WHERE peer = ?`, p).Scan(&f.Peer, &f.Name, &addrs, &added)
	if err != nil {
		return f, err
	}
	json.Unmarshal([]byte(addrs), &f.Addrs)
	f.Added = time.Unix(added, 0)
	return f, nil
}

func (n *Node) friendByName(ctx context.Context, name string) (friendRow, error) {
	var p string
	err := n.db.QueryRowContext(ctx, `SELECT peer FROM friends WHERE name = ?`, strings.TrimSpace(name)).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return friendRow{}, fmt.Errorf("%w: no friend named %q (see erg friend ls)", erg.ErrNotFound, name)
	}
	if err != nil {
		return friendRow{}, err
	}
	return n.friendByPeer(ctx, p)
}

func (n *Node) isFriend(p peer.ID) bool {
	var one int
	err := n.db.QueryRow(`SELECT 1 FROM friends WHERE peer = ?`, p.String()).Scan(&one)
	return err == nil
}

func (n *Node) toFriend(f friendRow) erg.Friend {
	out := erg.Friend{Name: f.Name, Peer: f.Peer, Addrs: f.Addrs, Added: f.Added}
	if id, err := peer.Decode(f.Peer); err == nil {
		out.Online = n.p2p.host.Libp2p().Network().Connectedness(id) == network.Connected
	}
	return out
}

// Friends implements webui.FriendsBackend: every signed-in user sees the
// node's friends, to share grains with them.
func (n *Node) Friends(ctx context.Context, who erg.User) ([]erg.Friend, error) {
	fs, err := n.listFriends(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]erg.Friend, 0, len(fs))
	for _, f := range fs {
		out = append(out, n.toFriend(f))
	}
	return out, nil
}

// NewFriendInvite implements webui.FriendsBackend.
func (n *Node) NewFriendInvite(ctx context.Context, who erg.User) (erg.FriendInvite, error) {
	if err := requireOwner(who); err != nil {
		return erg.FriendInvite{}, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	now := time.Now()
	expires := now.Add(friendInviteTTL)
	if _, err := n.db.ExecContext(ctx, `INSERT INTO friend_invites (hash, created_at, expires_at) VALUES (?, ?, ?)`,
		hashToken(string(secret)), now.Unix(), expires.Unix()); err != nil {
		return erg.FriendInvite{}, err
	}
	n.db.ExecContext(ctx, `DELETE FROM friend_invites WHERE expires_at <= ?`, now.Unix())
	inv := fed.Invite{Peer: n.p2p.host.ID().String(), Addrs: n.p2p.host.Addrs(), Name: n.fed.name, Secret: secret}
	if len(inv.Addrs) > 16 {
		inv.Addrs = inv.Addrs[:16]
	}
	return erg.FriendInvite{Code: inv.String(), Expires: time.Unix(expires.Unix(), 0)}, nil
}

// AddFriend implements webui.FriendsBackend: it redeems the invite with
// the inviting node, and both record each other.
func (n *Node) AddFriend(ctx context.Context, who erg.User, code string) (erg.Friend, error) {
	if err := requireOwner(who); err != nil {
		return erg.Friend{}, err
	}
	inv, err := fed.ParseInvite(code)
	if err != nil {
		return erg.Friend{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	id, err := peer.Decode(inv.Peer)
	if err != nil {
		return erg.Friend{}, fmt.Errorf("%w: the invite's node id is damaged", erg.ErrInvalid)
	}
	if id == n.p2p.host.ID() {
		return erg.Friend{}, fmt.Errorf("%w: that invite is this node's own", erg.ErrInvalid)
	}
	if n.isFriend(id) {
		f, _ := n.friendByPeer(ctx, id.String())
		return erg.Friend{}, fmt.Errorf("%w: already friends with that node (as %q)", erg.ErrInvalid, f.Name)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range inv.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ai.Addrs = append(ai.Addrs, m)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, friendStreamTimeout)
	defer cancel()
	if err := n.dialFriend(ctx, ai); err != nil {
		return erg.Friend{}, fmt.Errorf("cannot reach %s: %w", inv.Name, err)
	}
	s, err := n.p2p.host.NewStream(ctx, id, fed.FriendProtocol, friendStreamTimeout)
	if err != nil {
		return erg.Friend{}, fmt.Errorf("cannot reach %s: %w", inv.Name, err)
	}
	defer s.Close()
	addrs := n.p2p.host.Addrs()
	if len(addrs) > 16 {
		addrs = addrs[:16]
	}
	if err := fed.WriteFrame(s, fed.FriendRequest{Secret: inv.Secret, Name: n.fed.name, Addrs: addrs}); err != nil {
		return erg.Friend{}, fmt.Errorf("friend request to %s: %w", inv.Name, err)
	}
	var rep fed.FriendReply
	if err := fed.ReadFrame(s.R, &rep); err != nil {
		return erg.Friend{}, fmt.Errorf("friend request to %s: %w", inv.Name, err)
	}
	if rep.Error != "" {
		return erg.Friend{}, fmt.Errorf("%w: %s refused: %s", erg.ErrForbidden, inv.Name, rep.Error)
	}
	if err := fed.CheckNodeName(rep.Name); err != nil {
		return erg.Friend{}, fmt.Errorf("%s answered with a bad name: %w", inv.Name, err)
	}
	f, err := n.recordFriend(ctx, id, rep.Name, inv.Addrs)
	if err != nil {
		return erg.Friend{}, err
	}
	n.log.Info("friend added", "name", f.Name, "peer", id)
	return n.toFriend(f), nil
}

// uniqueViolated tells an error from a UNIQUE constraint (the SQLite
// driver's extended result code), the one a taken friend name gives.
func uniqueViolated(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// recordFriend stores a friend, choosing a free name if another friend
// already has this one.
func (n *Node) recordFriend(ctx context.Context, id peer.ID, name string, addrs []string) (friendRow, error) {
	b, _ := json.Marshal(addrs)
	now := time.Now()
	base := name
	for i := 2; ; i++ {
		_, err := n.db.ExecContext(ctx, `INSERT INTO friends (peer, name, addrs, added_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (peer) DO UPDATE SET addrs = excluded.addrs`, id.String(), name, string(b), now.Unix())
		if err == nil {
			break
		}
		if !uniqueViolated(err) || i > 20 {
			return friendRow{}, fmt.Errorf("record friend: %w", err)
		}
		suffix := fmt.Sprintf("-%d", i)
		name = base[:min(len(base), 64-len(suffix))] + suffix
	}
	n.p2p.host.Libp2p().ConnManager().Protect(id, protectTag)
	return n.friendByPeer(ctx, id.String())
}

// serveFriendRequest answers a friend request on the inviting node.
func (n *Node) serveFriendRequest(s network.Stream) {
	defer s.Close()
	remote := s.Conn().RemotePeer()
	s.SetDeadline(time.Now().Add(friendStreamTimeout))
	refuse := func(msg string) { fed.WriteFrame(s, fed.FriendReply{Error: msg}) }
	if !n.fed.limiter.Allow("friend:" + remote.String()) {
		refuse(fed.ErrTooManyRestores.Error())
		return
	}
	var req fed.FriendRequest
	if err := fed.ReadFrame(bufio.NewReader(s), &req); err != nil {
		s.Reset()
		return
	}
	if err := fed.CheckNodeName(req.Name); err != nil {
		refuse(err.Error())
		return
	}
	if len(req.Addrs) > 16 {
		req.Addrs = req.Addrs[:16]
	}
	var addrs []string
	for _, a := range req.Addrs {
		if _, err := ma.NewMultiaddr(a); err == nil && len(a) <= 256 {
			addrs = append(addrs, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), friendStreamTimeout)
	defer cancel()
	if n.isFriend(remote) {
		refuse("already friends")
		return
	}
	// Spending the invite is deleting it: of two racing requests with one
	// secret exactly one succeeds.
	res, err := n.db.ExecContext(ctx, `DELETE FROM friend_invites WHERE hash = ? AND expires_at > ?`,
		hashToken(string(req.Secret)), time.Now().Unix())
	if err != nil {
		refuse("internal error")
		return
	}
	if k, _ := res.RowsAffected(); k != 1 || len(req.Secret) != 32 {
		refuse("the invite is unknown, used or expired")
		return
	}
	f, err := n.recordFriend(ctx, remote, req.Name, addrs)
	if err != nil {
		refuse("internal error")
		return
	}
	fed.WriteFrame(s, fed.FriendReply{Name: n.fed.name})
	n.log.Info("friend added", "name", f.Name, "peer", remote)
}

// RemoveFriend implements webui.FriendsBackend. The friend's node is told,
// if it can be reached, and forgets this one too. What this node shared
// with the friend is revoked; what it shared with this node is forgotten.
func (n *Node) RemoveFriend(ctx context.Context, who erg.User, name string) error {
	if err := requireOwner(who); err != nil {
		return err
	}
	f, err := n.friendByName(ctx, name)
	if err != nil {
		return err
	}
	id, _ := peer.Decode(f.Peer)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = n.callFriend(tctx, id, func(gw fed.Gateway) error { return fed.SendUnfriend(tctx, gw) })
	cancel()
	if err != nil {
		n.log.Info("friend not told it was removed", "name", f.Name, "err", err)
	}
	if err := n.forgetFriend(ctx, f); err != nil {
		return err
	}
	n.closeFedConns(id)
	return nil
}

// Unfriend implements fed.Shares: a friend's node ended the friendship.
// The connection it came on is left to that node to close.
func (n *Node) Unfriend(ctx context.Context, peerID string) error {
	f, err := n.friendByPeer(ctx, peerID)
	if err != nil {
		return nil
	}
	return n.forgetFriend(ctx, f)
}

func (n *Node) forgetFriend(ctx context.Context, f friendRow) error {
	id, _ := peer.Decode(f.Peer)
	rows, err := n.db.QueryContext(ctx, `SELECT id FROM shares WHERE friend_peer = ?`, f.Peer)
	if err != nil {
		return err
	}
	var shareIDs []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		shareIDs = append(shareIDs, s)
	}
	rows.Close()
	// Shares and remote grains go with the friend (ON DELETE CASCADE).
	if _, err := n.db.ExecContext(ctx, `DELETE FROM friends WHERE peer = ?`, f.Peer); err != nil {
		return fmt.Errorf("remove friend: %w", err)
	}
	for _, s := range shareIDs {
		n.revokeServers(s)
	}
	n.forgetRemoteFrom(f.Peer)
	n.p2p.host.Libp2p().ConnManager().Unprotect(id, protectTag)
	n.log.Info("friend removed", "name", f.Name, "peer", f.Peer)
	return nil
}

// dialFriend connects to a friend: at the given addresses, else at those
// the DHT knows.
func (n *Node) dialFriend(ctx context.Context, ai peer.AddrInfo) error {
	h := n.p2p.host.Libp2p()
	if h.Network().Connectedness(ai.ID) == network.Connected {
		return nil
	}
	var err error
	if len(ai.Addrs) > 0 {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = h.Connect(dctx, ai)
		cancel()
		if err == nil {
			return nil
		}
	}
	// A lookup that first tries the friend's stale entry in the routing
	// table gives up on it; the second, with that entry gone, finds the
	// addresses other peers know.
	found, ferr := n.p2p.host.DHT().FindPeer(ctx, ai.ID)
	if ferr != nil && ctx.Err() == nil {
		found, ferr = n.p2p.host.DHT().FindPeer(ctx, ai.ID)
	}
	if ferr != nil {
		if err == nil {
			return ferr
		}
		return fmt.Errorf("%w; and the DHT: %v", err, ferr)
	}
	// The failed dial above left a backoff on the peer; these are other
	// addresses.
	if err := h.Connect(network.WithForceDirectDial(ctx, "addresses from the DHT"), found); err != nil {
		return err
	}
	if n.isFriend(ai.ID) {
		// Remember what the DHT said, less what just failed.
		failed := map[string]bool{}
		for _, a := range ai.Addrs {
			failed[a.String()] = true
		}
		var addrs []string
		for _, a := range found.Addrs {
			if !failed[a.String()] {
				addrs = append(addrs, a.String())
			}
		}
		b, _ := json.Marshal(addrs)
		n.db.ExecContext(ctx, `UPDATE friends SET addrs = ? WHERE peer = ?`, string(b), ai.ID.String())
	}
	return nil
}

// connectFriend connects to a stored friend.
func (n *Node) connectFriend(ctx context.Context, id peer.ID) error {
	f, err := n.friendByPeer(ctx, id.String())
	if err != nil {
		return fmt.Errorf("%w: not a friend", erg.ErrNotFound)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range f.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ai.Addrs = append(ai.Addrs, m)
		}
	}
	// Addresses the host learned since (identify, the DHT) count too.
	ai.Addrs = append(ai.Addrs, n.p2p.host.Libp2p().Peerstore().Addrs(id)...)
	return n.dialFriend(ctx, ai)
}

// friendLoop keeps friends connected.
func (n *Node) friendLoop(ctx context.Context) {
	for {
		fs, _ := n.listFriends(ctx)
		for _, f := range fs {
			id, err := peer.Decode(f.Peer)
			if err != nil {
				continue
			}
			if n.p2p.host.Libp2p().Network().Connectedness(id) != network.Connected {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				n.connectFriend(cctx, id)
				cancel()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(friendCheckInterval):
		}
	}
}
