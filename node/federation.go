package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/fed"
	"erg/friends"
	"erg/grains"
)

// maxRemoteGrainsPerFriend bounds the shares one friend may deliver, so a
// friend cannot fill this node's database.
const maxRemoteGrainsPerFriend = 1000

// errShareRevoked is what this node's user sees for a grain whose owner
// revoked the share.
var errShareRevoked = errors.New("the owner revoked this share")

var _ friends.Shares = (*Node)(nil)

// --- The owner's side: shares to friends ---

// shareWithFriend makes a share for a friend's node and delivers it there
// over Cap'n Proto. If the friend's node cannot take it, nothing is kept.
func (n *Node) shareWithFriend(ctx context.Context, who erg.User, g *grains.Info, req erg.ShareRequest) (erg.Share, error) {
	if req.Anonymous || strings.TrimSpace(req.ForUser) != "" {
		return erg.Share{}, fmt.Errorf("%w: a share to a friend's node is for that node's users, not local ones or anonymous", erg.ErrInvalid)
	}
	f, err := n.friendByName(ctx, req.Friend)
	if errors.Is(err, erg.ErrNotFound) {
		return erg.Share{}, fmt.Errorf("%w: no friend named %q", erg.ErrInvalid, req.Friend)
	}
	if err != nil {
		return erg.Share{}, err
	}
	id, err := peer.Decode(f.Peer)
	if err != nil {
		return erg.Share{}, err
	}
	friendUser := ""
	if strings.TrimSpace(req.FriendUser) != "" {
		if friendUser, err = checkUsername(req.FriendUser); err != nil {
			return erg.Share{}, err
		}
	}
	label := strings.TrimSpace(req.Label)
	if len(label) > 100 {
		return erg.Share{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	if req.ExpiresIn < 0 || time.Duration(req.ExpiresIn)*time.Second > maxShareLifetime {
		return erg.Share{}, fmt.Errorf("%w: a share expires within a year, or never (0)", erg.ErrInvalid)
	}
	m, title := g.App(), g.Title()
	role, _ := m.Role(req.Role)
	now := time.Now()
	sh := erg.Share{ID: newShortID(), GrainID: g.ID(), Role: req.Role, Label: label, Created: time.Unix(now.Unix(), 0),
		Friend: f.Name, FriendUser: friendUser}
	var expires int64
	if req.ExpiresIn > 0 {
		sh.Expires = time.Unix(now.Unix()+req.ExpiresIn, 0)
		expires = sh.Expires.Unix()
	}
	token := make([]byte, 32)
	rand.Read(token)
	if _, err := n.db.ExecContext(ctx, `INSERT INTO shares (id, hash, grain_id, role, label, created_at, expires_at, friend_peer, friend_user)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sh.ID, hashToken(string(token)), g.ID(), sh.Role, label, now.Unix(), expires, f.Peer, friendUser); err != nil {
		return erg.Share{}, fmt.Errorf("new share: %w", err)
	}
	offer := fed.Offer{Token: token, Owner: who.Username, User: friendUser,
		Info: fed.ShareInfo{Title: title, AppName: m.Name, Role: sh.Role, Permissions: role.Permissions}}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = n.callFriend(dctx, id, func(gw fed.Gateway) error { return fed.SendOffer(dctx, gw, offer) })
	if err != nil {
		n.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM shares WHERE id = ?`, sh.ID)
		// The friend's refusal keeps its kind; one without (an older
		// node's, or no answer) is a request that could not be carried out.
		kind := erg.KindOf(err)
		if kind == erg.Internal {
			kind = erg.Invalid
		}
		return erg.Share{}, erg.E(kind, "%s did not take the share: %s", f.Name, erg.Message(err))
	}
	n.log.Info("grain shared with a friend", "grain", g.ID(), "share", sh.ID, "role", sh.Role, "friend", f.Name, "user", friendUser)
	return sh, nil
}

// connectionLost tells a call that failed because the connection died from
// one the friend's node refused.
func connectionLost(err error) bool { return friends.ConnectionLost(err) }

// revokeFriendShare ends a revoked share's live capabilities and tells the
// friend's node.
func (n *Node) revokeFriendShare(shareID, friendPeer, hash string) {
	n.revokeServers(shareID)
	id, err := peer.Decode(friendPeer)
	if err != nil {
		return
	}
	sum, err := hex.DecodeString(hash)
	if err != nil {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := n.callFriend(ctx, id, func(gw fed.Gateway) error { return fed.SendWithdraw(ctx, gw, sum) })
		if err != nil {
			n.log.Debug("tell friend of a revoked share", "share", shareID, "err", err)
		}
	}()
}

func (n *Node) revokeServers(shareID string) {
	st := n.fed
	st.mu.Lock()
	servers := st.servers[shareID]
	delete(st.servers, shareID)
	st.mu.Unlock()
	for s := range servers {
		s.Revoke()
	}
}

// Restore implements fed.Shares: a friend's node turns a share token into
// a grain capability for one of its users.
func (n *Node) Restore(ctx context.Context, peerID, user string, token []byte) (*fed.GrainServer, fed.ShareInfo, error) {
	f, err := n.friendByPeer(ctx, peerID)
	if err != nil {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	hash := hashToken(string(token))
	var shareID, grainID, role, friendUser string
	err = n.db.QueryRowContext(ctx, `SELECT id, grain_id, role, friend_user FROM shares
		WHERE hash = ? AND friend_peer = ? AND (expires_at = 0 OR expires_at > ?)`, hash, peerID, time.Now().Unix()).
		Scan(&shareID, &grainID, &role, &friendUser)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	if err != nil {
		return nil, fed.ShareInfo{}, err
	}
	uname, err := checkUsername(user)
	if err != nil {
		return nil, fed.ShareInfo{}, erg.E(erg.Invalid, "the user name is not a valid erg username")
	}
	if friendUser != "" && subtle.ConstantTimeCompare([]byte(friendUser), []byte(uname)) != 1 {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	g, err := n.grains.Lookup(grainID)
	if err != nil {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	m, title := g.App(), g.Title()
	rl, _ := m.Role(role)
	v := erg.Viewer{
		UserID:      n.derive("friend-user-id", peerID, uname, grainID),
		Username:    uname + "@" + f.Name,
		Permissions: rl.Permissions,
		SessionID:   n.derive("friend-session", randomToken()),
	}
	gs := fed.NewGrainServer(n.grainTransport(grainID), func(r *http.Request) {
		fed.SetIdentity(r.Header, v.UserID, v.Username, v.Permissions, v.SessionID)
	})
	st := n.fed
	gs.OnRelease = func() {
		st.mu.Lock()
		delete(st.servers[shareID], gs)
		if len(st.servers[shareID]) == 0 {
			delete(st.servers, shareID)
		}
		st.mu.Unlock()
	}
	st.mu.Lock()
	if st.servers[shareID] == nil {
		st.servers[shareID] = map[*fed.GrainServer]struct{}{}
	}
	st.servers[shareID][gs] = struct{}{}
	st.mu.Unlock()
	// A revocation between the lookup and now missed this server; look
	// again now that revocations see it.
	var one int
	if err := n.db.QueryRowContext(ctx, `SELECT 1 FROM shares WHERE id = ?`, shareID).Scan(&one); err != nil {
		gs.Revoke()
		gs.OnRelease()
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	n.log.Info("friend restored a share", "friend", f.Name, "user", uname, "grain", grainID, "role", role)
	return gs, fed.ShareInfo{Title: title, AppName: m.Name, Role: role, Permissions: rl.Permissions}, nil
}

// grainTransport sends each request into a local grain, starting it if
// needed and keeping it running while the exchange lasts.
func (n *Node) grainTransport(grainID string) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if _, err := n.grains.Lookup(grainID); err != nil {
			return nil, err
		}
		rt, release, err := n.grains.Acquire(req.Context(), grainID)
		if err != nil {
			return nil, err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			release()
			return nil, err
		}
		var once sync.Once
		done := func() { once.Do(release) }
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &releaseRWC{ReadWriteCloser: rwc, done: done}
		} else {
			resp.Body = &releaseBody{ReadCloser: resp.Body, done: done}
		}
		return resp, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type releaseBody struct {
	io.ReadCloser
	done func()
}

func (b *releaseBody) Close() error { err := b.ReadCloser.Close(); b.done(); return err }

type releaseRWC struct {
	io.ReadWriteCloser
	done func()
}

func (b *releaseRWC) Close() error { err := b.ReadWriteCloser.Close(); b.done(); return err }

// --- The friend's side: grains shared with this node ---

// remoteGrain is a grain a friend shared with one user of this node. It
// is served on this node's own grain origin, g-<id>.<domain>.
type remoteGrain struct {
	id, peer, userID            string
	token                       []byte
	title, appName, role, owner string
	perms                       []string
	revoked                     bool
	created                     time.Time
	mu                          sync.Mutex // guards rt while restoring
	rt                          *fed.Transport
	conn                        *rpc.Conn
}

func (n *Node) loadRemoteGrains(ctx context.Context) error {
	rows, err := n.db.QueryContext(ctx, `SELECT id, peer, token, user_id, title, app_name, role, permissions, owner, revoked, created_at FROM remote_grains`)
	if err != nil {
		return fmt.Errorf("load shared grains: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		g := &remoteGrain{}
		var perms string
		var created int64
		if err := rows.Scan(&g.id, &g.peer, &g.token, &g.userID, &g.title, &g.appName, &g.role, &perms, &g.owner, &g.revoked, &created); err != nil {
			return err
		}
		g.perms = splitList(perms)
		g.created = time.Unix(created, 0)
		n.fed.remote[g.id] = g
	}
	return rows.Err()
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// remoteGrain returns a grain shared from a friend's node, or nil.
func (n *Node) remoteGrain(id string) *remoteGrain {
	if n.fed == nil {
		return nil
	}
	n.fed.mu.Lock()
	defer n.fed.mu.Unlock()
	return n.fed.remote[id]
}

// Offer implements fed.Shares: a friend's node delivers a share.
func (n *Node) Offer(ctx context.Context, peerID string, o fed.Offer) error {
	if _, err := n.friendByPeer(ctx, peerID); err != nil {
		return erg.E(erg.Forbidden, "this node is not your friend")
	}
	userID := ownerID
	if o.User != "" {
		name, err := checkUsername(o.User)
		if err != nil {
			return erg.E(erg.Invalid, "no such user on this node")
		}
		u, err := n.userByName(ctx, name)
		if err != nil {
			return erg.E(erg.Invalid, "no user %q on this node", name)
		}
		userID = u.ID
	}
	if _, err := checkUsername(o.Owner); err != nil {
		return erg.E(erg.Invalid, "the owner's name is not a valid erg username")
	}
	if strings.ContainsAny(o.Info.Role, ",") || strings.ContainsFunc(strings.Join(o.Info.Permissions, ""), func(r rune) bool { return r == ',' }) {
		return erg.E(erg.Invalid, "role and permission names hold no commas")
	}
	var count int
	n.db.QueryRowContext(ctx, `SELECT count(*) FROM remote_grains WHERE peer = ?`, peerID).Scan(&count)
	if count >= maxRemoteGrainsPerFriend {
		return erg.E(erg.TooMany, "this node holds %d shares from yours already", count)
	}
	title := o.Info.Title
	if title == "" {
		title = "Untitled " + o.Info.AppName
	}
	g := &remoteGrain{id: grains.NewID(), peer: peerID, userID: userID, token: o.Token, title: title, appName: o.Info.AppName,
		role: o.Info.Role, perms: o.Info.Permissions, owner: o.Owner, created: time.Unix(time.Now().Unix(), 0)}
	err := n.db.QueryRowContext(ctx, `INSERT INTO remote_grains (id, peer, token, user_id, title, app_name, role, permissions, owner, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer, token) DO UPDATE SET title = excluded.title, role = excluded.role, permissions = excluded.permissions, revoked = 0
		RETURNING id`, g.id, peerID, g.token, userID, g.title, g.appName, g.role, strings.Join(g.perms, ","), g.owner, g.created.Unix()).Scan(&g.id)
	if err != nil {
		return fmt.Errorf("record share: %w", err)
	}
	n.fed.mu.Lock()
	n.fed.remote[g.id] = g
	n.fed.mu.Unlock()
	n.log.Info("a friend shared a grain", "grain", g.id, "title", g.title, "role", g.role, "owner", g.owner)
	return nil
}

// Withdraw implements fed.Shares: the friend's node revoked a share.
func (n *Node) Withdraw(ctx context.Context, peerID string, hash []byte) error {
	n.fed.mu.Lock()
	var found *remoteGrain
	for _, g := range n.fed.remote {
		sum := sha256.Sum256(g.token)
		if g.peer == peerID && subtle.ConstantTimeCompare(sum[:], hash) == 1 {
			found = g
		}
	}
	n.fed.mu.Unlock()
	if found == nil {
		return nil
	}
	n.markRevoked(found)
	return nil
}

// markRevoked records that a remote grain's share was revoked. Its
// sessions stay: the owner's node already cut their exchanges, and every
// later request is answered with why.
func (n *Node) markRevoked(g *remoteGrain) {
	n.fed.mu.Lock()
	already := g.revoked
	g.revoked = true
	n.fed.mu.Unlock()
	if already {
		return
	}
	n.db.Exec(`UPDATE remote_grains SET revoked = 1 WHERE id = ?`, g.id)
	g.mu.Lock()
	if g.rt != nil {
		g.rt.Grain.Release()
	}
	g.rt, g.conn = nil, nil
	g.mu.Unlock()
	n.log.Info("a friend revoked a share", "grain", g.id, "title", g.title)
}

// forgetRemoteFrom forgets the grains a removed friend shared.
func (n *Node) forgetRemoteFrom(peerID string) {
	st := n.fed
	st.mu.Lock()
	gone := map[string]bool{}
	for id, g := range st.remote {
		if g.peer == peerID {
			gone[id] = true
			delete(st.remote, id)
		}
	}
	st.mu.Unlock()
	n.grains.Sessions().Drop(func(s grains.Session) bool { return gone[s.GrainID] })
}

// forgetRemoteOf forgets the grains friends shared with a removed user
// (the database dropped them with the user).
func (n *Node) forgetRemoteOf(userID string) {
	st := n.fed
	if st == nil {
		return
	}
	st.mu.Lock()
	gone := map[string]bool{}
	for id, g := range st.remote {
		if g.userID == userID {
			gone[id] = true
			delete(st.remote, id)
		}
	}
	st.mu.Unlock()
	n.grains.Sessions().Drop(func(s grains.Session) bool { return gone[s.GrainID] })
}

func (n *Node) remoteToAPI(g *remoteGrain, names map[string]string) erg.Grain {
	n.fed.mu.Lock()
	defer n.fed.mu.Unlock()
	from := names[g.peer]
	return erg.Grain{ID: g.id, AppName: g.appName, Title: g.title, Owner: g.owner + "@" + from, Role: g.role,
		Created: g.created, LastUsed: g.created, From: from, Revoked: g.revoked}
}

// remoteGrains lists the grains friends shared with who.
func (n *Node) remoteGrains(ctx context.Context, who erg.User) []erg.Grain {
	if n.fed == nil {
		return nil
	}
	names := n.friendNames(ctx)
	var gs []*remoteGrain
	n.fed.mu.Lock()
	for _, g := range n.fed.remote {
		if g.userID == who.ID {
			gs = append(gs, g)
		}
	}
	n.fed.mu.Unlock()
	out := make([]erg.Grain, 0, len(gs))
	for _, g := range gs {
		out = append(out, n.remoteToAPI(g, names))
	}
	return out
}

// openRemote gives who a one-time login URL for a remote grain's origin
// on this node.
func (n *Node) openRemote(ctx context.Context, who erg.User, g *remoteGrain) (erg.Grain, error) {
	out := n.remoteToAPI(g, n.friendNames(ctx))
	if out.Revoked {
		return erg.Grain{}, fmt.Errorf("%w: %q: %v", erg.ErrForbidden, g.title, errShareRevoked)
	}
	token, err := n.grains.Sessions().NewLoginToken(ctx, grains.RemoteGrain, g.id, g.userID, "")
	if err != nil {
		return erg.Grain{}, err
	}
	out.URL = n.grainOrigin(g.id) + "/_erg/login?token=" + url.QueryEscape(token)
	return out, nil
}

// remoteHandle is a grain a friend's node shared, on this node's grain
// origin for it.
type remoteHandle struct {
	n *Node
	g *remoteGrain
}

func (rh remoteHandle) describe(ctx context.Context, who erg.User) (erg.Grain, error) {
	if rh.g.userID != who.ID {
		return erg.Grain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, rh.g.id)
	}
	return rh.n.remoteToAPI(rh.g, rh.n.friendNames(ctx)), nil
}

func (rh remoteHandle) open(ctx context.Context, who erg.User) (erg.Grain, error) {
	if rh.g.userID != who.ID {
		return erg.Grain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, rh.g.id)
	}
	return rh.n.openRemote(ctx, who, rh.g)
}

// Redeem implements webui.GrainHandle.
func (rh remoteHandle) Redeem(ctx context.Context, token string) (string, error) {
	return rh.n.grains.Sessions().Redeem(ctx, grains.RemoteGrain, rh.g.id, token)
}

// Viewer implements webui.GrainHandle. A revoked share keeps its
// sessions: their requests are answered with why (Acquire), not a bare
// refusal.
func (rh remoteHandle) Viewer(ctx context.Context, session string) (erg.Viewer, error) {
	n, g := rh.n, rh.g
	s, err := n.grains.Sessions().Check(ctx, hashToken(session), g.id, func(ctx context.Context, hash string) (grains.Session, error) {
		return n.loadRemoteSession(ctx, hash, g)
	})
	if err != nil {
		return erg.Viewer{}, err
	}
	n.fed.mu.Lock()
	perms := g.perms
	n.fed.mu.Unlock()
	return erg.Viewer{UserID: s.UserID, Username: s.Username, Permissions: perms, SessionID: s.SessionID,
		Session: s.Context(), Expires: s.Expires, Account: s.AccountID}, nil
}

// loadRemoteSession reads a session on a friend's grain: only the user
// it was shared with holds one.
func (n *Node) loadRemoteSession(ctx context.Context, hash string, g *remoteGrain) (grains.Session, error) {
	var expires int64
	var accountID sql.NullString
	err := n.db.QueryRowContext(ctx, `SELECT expires_at, user_id FROM grain_sessions WHERE hash = ? AND remote_grain_id = ?`, hash, g.id).
		Scan(&expires, &accountID)
	if err != nil || accountID.String != g.userID {
		return grains.Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	u, err := n.userByID(ctx, g.userID)
	if err != nil {
		return grains.Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	return grains.Session{
		GrainID:   g.id,
		Expires:   time.Unix(expires, 0),
		AccountID: g.userID,
		Username:  u.Username,
		UserID:    n.derive("user-id", g.userID, g.id),
		SessionID: n.derive("session-id", hash),
	}, nil
}

// restoreRemote returns a transport into a remote grain, restoring the
// share over Cap'n Proto if this node has no live capability for it.
func (n *Node) restoreRemote(ctx context.Context, g *remoteGrain) (*fed.Transport, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rt != nil {
		select {
		case <-g.conn.Done():
			g.rt.Grain.Release()
			g.rt, g.conn = nil, nil
		default:
			return g.rt, nil
		}
	}
	n.fed.mu.Lock()
	revoked := g.revoked
	n.fed.mu.Unlock()
	if revoked {
		return nil, errShareRevoked
	}
	id, err := peer.Decode(g.peer)
	if err != nil {
		return nil, err
	}
	u, err := n.userByID(ctx, g.userID)
	if err != nil {
		return nil, err
	}
	var c *fedConn
	var grain fed.Grain
	var info fed.ShareInfo
	for attempt := 0; ; attempt++ {
		if c, err = n.gateway(ctx, id); err != nil {
			return nil, err
		}
		grain, info, err = fed.Restore(ctx, c.gw, g.token, u.Username)
		if err == nil || attempt > 0 || ctx.Err() != nil || !connectionLost(err) {
			break
		}
		// The connection may have died without saying so yet: dial anew.
		n.dropConn(id, c)
	}
	if errors.Is(err, fed.ErrUnknownToken) {
		g.mu.Unlock()
		n.markRevoked(g)
		g.mu.Lock()
		return nil, errShareRevoked
	}
	if err != nil {
		return nil, err
	}
	n.fed.mu.Lock()
	g.role, g.perms = info.Role, info.Permissions
	if info.Title != "" {
		g.title = info.Title
	}
	n.fed.mu.Unlock()
	g.rt, g.conn = &fed.Transport{Grain: grain}, c.conn
	return g.rt, nil
}

// dropRemoteRT forgets a capability that failed, so the next request
// restores the share again.
func (g *remoteGrain) dropRT(t *fed.Transport) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rt == t {
		g.rt.Grain.Release()
		g.rt, g.conn = nil, nil
	}
}

// Acquire returns a transport into a remote grain. A capability
// lost with its connection (the owner's node restarted, the network
// dropped) is restored again on the next request, which is retried once
// if it had no body.
//
// It implements webui.GrainHandle.
func (rh remoteHandle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	n, g := rh.n, rh.g
	if _, err := n.restoreRemote(ctx, g); err != nil && !errors.Is(err, errShareRevoked) {
		return nil, nil, err
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		for attempt := 0; ; attempt++ {
			t, err := n.restoreRemote(req.Context(), g)
			if errors.Is(err, errShareRevoked) {
				return revokedResponse(req), nil
			}
			if err != nil {
				return nil, err
			}
			resp, err := t.RoundTrip(req)
			if err == nil {
				return resp, nil
			}
			if errors.Is(err, fed.ErrRevoked) {
				n.markRevoked(g)
				return revokedResponse(req), nil
			}
			g.dropRT(t)
			if attempt > 0 || req.Context().Err() != nil || (req.Body != nil && req.Body != http.NoBody) {
				return nil, err
			}
		}
	}), func() {}, nil
}

func revokedResponse(req *http.Request) *http.Response {
	body := errShareRevoked.Error() + "\n"
	return &http.Response{
		StatusCode: http.StatusForbidden, Status: "403 Forbidden",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
