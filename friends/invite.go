package friends

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"erg"
	"erg/accounts"
	"erg/fed"
)

// NewInvite makes a one-time invite code, good for InviteTTL. Owner only.
func (s *Service) NewInvite(ctx context.Context, who erg.User) (erg.FriendInvite, error) {
	if err := accounts.RequireOwner(who); err != nil {
		return erg.FriendInvite{}, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	now := time.Now()
	expires := now.Add(InviteTTL)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO friend_invites (hash, created_at, expires_at) VALUES (?, ?, ?)`,
		hashToken(string(secret)), now.Unix(), expires.Unix()); err != nil {
		return erg.FriendInvite{}, err
	}
	s.db.ExecContext(ctx, `DELETE FROM friend_invites WHERE expires_at <= ?`, now.Unix())
	inv := fed.Invite{Peer: s.host.ID().String(), Addrs: s.addrs(), Name: s.name, Secret: secret}
	return erg.FriendInvite{Code: inv.String(), Expires: time.Unix(expires.Unix(), 0)}, nil
}

// addrs are the host's addresses to give another node, at most maxAddrs:
// those the internet reaches first, then the relayed ones (how a friend
// dials a node behind NAT), then the rest (a friend on the same LAN or
// machine).
func (s *Service) addrs() []string {
	var public, relayed, rest []string
	for _, a := range s.host.Addrs() {
		m, err := ma.NewMultiaddr(a)
		switch {
		case err != nil:
		case strings.Contains(a, "/p2p-circuit"):
			relayed = append(relayed, a)
		case manet.IsPublicAddr(m):
			public = append(public, a)
		default:
			rest = append(rest, a)
		}
	}
	all := append(append(public, relayed...), rest...)
	if len(all) > maxAddrs {
		all = all[:maxAddrs]
	}
	return all
}

// Add redeems another node's invite code with that node, and both record
// each other. Owner only.
func (s *Service) Add(ctx context.Context, who erg.User, code string) (erg.Friend, error) {
	if err := accounts.RequireOwner(who); err != nil {
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
	if id == s.host.ID() {
		return erg.Friend{}, fmt.Errorf("%w: that invite is this node's own", erg.ErrInvalid)
	}
	if s.IsFriend(id) {
		f, _ := s.ByPeer(ctx, id.String())
		return erg.Friend{}, fmt.Errorf("%w: already friends with that node (as %q)", erg.ErrInvalid, f.Name)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range inv.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ai.Addrs = append(ai.Addrs, m)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	if err := s.dial(ctx, ai); err != nil {
		return erg.Friend{}, fmt.Errorf("cannot reach %s: %w", inv.Name, err)
	}
	st, err := s.host.NewStream(ctx, id, fed.FriendProtocol, streamTimeout)
	if err != nil {
		return erg.Friend{}, fmt.Errorf("cannot reach %s: %w", inv.Name, err)
	}
	defer st.Close()
	if err := fed.WriteFrame(st, fed.FriendRequest{Secret: inv.Secret, Name: s.name, Addrs: s.addrs()}); err != nil {
		return erg.Friend{}, fmt.Errorf("friend request to %s: %w", inv.Name, err)
	}
	var rep fed.FriendReply
	if err := fed.ReadFrame(st.R, &rep); err != nil {
		return erg.Friend{}, fmt.Errorf("friend request to %s: %w", inv.Name, err)
	}
	if rep.Error != "" {
		return erg.Friend{}, fmt.Errorf("%w: %s refused: %s", erg.ErrForbidden, inv.Name, rep.Error)
	}
	if err := fed.CheckNodeName(rep.Name); err != nil {
		return erg.Friend{}, fmt.Errorf("%s answered with a bad name: %w", inv.Name, err)
	}
	f, err := s.Record(ctx, id, rep.Name, inv.Addrs)
	if err != nil {
		return erg.Friend{}, err
	}
	s.log.Info("friend added", "name", f.Name, "peer", id)
	return s.toAPI(f), nil
}

// serveFriendRequest answers a friend request on the inviting node.
func (s *Service) serveFriendRequest(st network.Stream) {
	defer st.Close()
	remote := st.Conn().RemotePeer()
	st.SetDeadline(time.Now().Add(streamTimeout))
	refuse := func(msg string) { fed.WriteFrame(st, fed.FriendReply{Error: msg}) }
	if !s.limiter.Allow("friend:" + remote.String()) {
		refuse(fed.ErrTooManyRestores.Error())
		return
	}
	var req fed.FriendRequest
	if err := fed.ReadFrame(bufio.NewReader(st), &req); err != nil {
		st.Reset()
		return
	}
	if err := fed.CheckNodeName(req.Name); err != nil {
		refuse(err.Error())
		return
	}
	if len(req.Addrs) > maxAddrs {
		req.Addrs = req.Addrs[:maxAddrs]
	}
	var addrs []string
	for _, a := range req.Addrs {
		if _, err := ma.NewMultiaddr(a); err == nil && len(a) <= 256 {
			addrs = append(addrs, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	if s.IsFriend(remote) {
		refuse("already friends")
		return
	}
	// Spending the invite is deleting it: of two racing requests with one
	// secret exactly one succeeds.
	res, err := s.db.ExecContext(ctx, `DELETE FROM friend_invites WHERE hash = ? AND expires_at > ?`,
		hashToken(string(req.Secret)), time.Now().Unix())
	if err != nil {
		refuse("internal error")
		return
	}
	if k, _ := res.RowsAffected(); k != 1 || len(req.Secret) != 32 {
		refuse("the invite is unknown, used or expired")
		return
	}
	f, err := s.Record(ctx, remote, req.Name, addrs)
	if err != nil {
		refuse("internal error")
		return
	}
	fed.WriteFrame(st, fed.FriendReply{Name: s.name})
	s.log.Info("friend added", "name", f.Name, "peer", remote)
}
