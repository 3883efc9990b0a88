package fedgrains

// The friend's side of shares between friends: grains friends' nodes
// shared with this node's users, served on this node's grain origins.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/accounts"
	"erg/apppkg"
	"erg/fed"
	"erg/friends"
	"erg/grains"
)

// maxRemoteGrainsPerFriend bounds the shares one friend may deliver, so a
// friend cannot fill this node's database.
const maxRemoteGrainsPerFriend = 1000

// remoteGrain is a grain a friend shared with one user of this node. It
// is served on this node's own grain origin, g-<id>.<domain>.
type remoteGrain struct {
	id, peer, userID            string
	token                       []byte
	title, appName, role, owner string
	perms, offers               []string
	roles                       []erg.Role // those the share hands on
	apiPath                     string
	revoked                     bool
	created                     time.Time
	mu                          sync.Mutex // guards caps while restoring
	// caps are the live capabilities into the grain: "" the share's
	// role, any other a role no higher that the powerbox handed on.
	caps map[string]liveCap
}

type liveCap struct {
	rt   *fed.Transport
	conn *rpc.Conn
}

func (s *Service) loadRemote(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, peer, token, user_id, title, app_name, role, permissions, offers, roles, api_path, owner, revoked, created_at FROM remote_grains`)
	if err != nil {
		return fmt.Errorf("load shared grains: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		g := &remoteGrain{}
		var perms, offers, roles string
		var created int64
		if err := rows.Scan(&g.id, &g.peer, &g.token, &g.userID, &g.title, &g.appName, &g.role, &perms, &offers, &roles, &g.apiPath, &g.owner, &g.revoked, &created); err != nil {
			return err
		}
		g.perms, g.offers = splitList(perms), splitList(offers)
		if roles != "" {
			json.Unmarshal([]byte(roles), &g.roles)
		}
		g.created = time.Unix(created, 0)
		s.remote[g.id] = g
	}
	return rows.Err()
}

// rolesJSON is how remote_grains keeps the roles a share hands on.
func rolesJSON(rs []erg.Role) string {
	if len(rs) == 0 {
		return ""
	}
	b, _ := json.Marshal(rs)
	return string(b)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Handle returns a grain a friend's node shared with this node, on its
// grain origin here; an id it holds no such grain by is erg.ErrNotFound.
func (s *Service) Handle(id string) (Handle, error) {
	s.mu.Lock()
	g := s.remote[id]
	s.mu.Unlock()
	if g == nil {
		return Handle{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return Handle{s, g}, nil
}

// Offer implements fed.Shares: a friend's node delivers a share.
func (s *Service) Offer(ctx context.Context, peerID string, o fed.Offer) error {
	if err := s.await(ctx); err != nil {
		return err
	}
	if _, err := s.friends.ByPeer(ctx, peerID); err != nil {
		return erg.E(erg.Forbidden, "this node is not your friend")
	}
	userID := accounts.OwnerID
	if o.User != "" {
		name, err := accounts.CheckUsername(o.User)
		if err != nil {
			return erg.E(erg.Invalid, "no such user on this node")
		}
		u, err := s.accounts.UserByName(ctx, name)
		if err != nil {
			return erg.E(erg.Invalid, "no user %q on this node", name)
		}
		userID = u.ID
	}
	if _, err := accounts.CheckUsername(o.Owner); err != nil {
		return erg.E(erg.Invalid, "the owner's name is not a valid erg username")
	}
	if err := checkInfo(o.Info); err != nil {
		return err
	}
	var count int
	s.db.QueryRowContext(ctx, `SELECT count(*) FROM remote_grains WHERE peer = ?`, peerID).Scan(&count)
	if count >= maxRemoteGrainsPerFriend {
		return erg.E(erg.TooMany, "this node holds %d shares from yours already", count)
	}
	title := o.Info.Title
	if title == "" {
		title = "Untitled " + o.Info.AppName
	}
	g := &remoteGrain{id: grains.NewID(), peer: peerID, userID: userID, token: o.Token, title: title, appName: o.Info.AppName,
		role: o.Info.Role, perms: o.Info.Permissions, offers: o.Info.Offers, roles: handedOn(o.Info), apiPath: o.Info.APIPath,
		owner: o.Owner, created: time.Unix(time.Now().Unix(), 0)}
	err := s.db.QueryRowContext(ctx, `INSERT INTO remote_grains (id, peer, token, user_id, title, app_name, role, permissions, offers, roles, api_path, owner, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer, token) DO UPDATE SET title = excluded.title, role = excluded.role, permissions = excluded.permissions,
			offers = excluded.offers, roles = excluded.roles, api_path = excluded.api_path, revoked = 0
		RETURNING id`, g.id, peerID, g.token, userID, g.title, g.appName, g.role, strings.Join(g.perms, ","),
		strings.Join(g.offers, ","), rolesJSON(g.roles), g.apiPath, g.owner, g.created.Unix()).Scan(&g.id)
	if err != nil {
		return fmt.Errorf("record share: %w", err)
	}
	s.mu.Lock()
	s.remote[g.id] = g
	s.mu.Unlock()
	s.log.Info("a friend shared a grain", "grain", g.id, "title", g.title, "role", g.role, "owner", g.owner)
	return nil
}

// Withdraw implements fed.Shares: the friend's node revoked a share.
func (s *Service) Withdraw(ctx context.Context, peerID string, hash []byte) error {
	s.mu.Lock()
	var found *remoteGrain
	for _, g := range s.remote {
		sum := sha256.Sum256(g.token)
		if g.peer == peerID && subtle.ConstantTimeCompare(sum[:], hash) == 1 {
			found = g
		}
	}
	s.mu.Unlock()
	if found == nil {
		return nil
	}
	s.markRevoked(found)
	return nil
}

// markRevoked records that a remote grain's share was revoked. Its
// sessions stay: the owner's node already cut their exchanges, and every
// later request is answered with why.
func (s *Service) markRevoked(g *remoteGrain) {
	s.mu.Lock()
	already := g.revoked
	g.revoked = true
	s.mu.Unlock()
	if already {
		return
	}
	s.db.Exec(`UPDATE remote_grains SET revoked = 1 WHERE id = ?`, g.id)
	g.mu.Lock()
	for _, c := range g.caps {
		c.rt.Grain.Release()
	}
	g.caps = nil
	g.mu.Unlock()
	s.log.Info("a friend revoked a share", "grain", g.id, "title", g.title)
}

func (s *Service) remoteToAPI(g *remoteGrain, names map[string]string) erg.Grain {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := names[g.peer]
	return erg.Grain{ID: g.id, AppName: g.appName, Title: g.title, Owner: g.owner + "@" + from, Role: g.role,
		Created: g.created, LastUsed: g.created, From: from, Revoked: g.revoked}
}

// Info is what the friend's node said of a grain it shared, as this
// node keeps it; false if it holds no grain by id.
func (s *Service) Info(id string) (fed.ShareInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.remote[id]
	if g == nil {
		return fed.ShareInfo{}, false
	}
	// learn replaces the slices, never writes into them: a copy of each
	// is the caller's.
	return fed.ShareInfo{Title: g.title, AppName: g.appName, Role: g.role, Permissions: slices.Clone(g.perms),
		Offers: slices.Clone(g.offers), Roles: slices.Clone(g.roles), APIPath: g.apiPath}, true
}

// List lists the grains friends shared with who.
func (s *Service) List(ctx context.Context, who erg.User) []erg.Grain {
	names := s.friends.Names(ctx)
	var gs []*remoteGrain
	s.mu.Lock()
	for _, g := range s.remote {
		if g.userID == who.ID {
			gs = append(gs, g)
		}
	}
	s.mu.Unlock()
	out := make([]erg.Grain, 0, len(gs))
	for _, g := range gs {
		out = append(out, s.remoteToAPI(g, names))
	}
	return out
}

// openRemote gives who a one-time login URL for a remote grain's origin
// on this node.
func (s *Service) openRemote(ctx context.Context, who erg.User, g *remoteGrain) (erg.Grain, error) {
	out := s.remoteToAPI(g, s.friends.Names(ctx))
	if out.Revoked {
		return erg.Grain{}, fmt.Errorf("%w: %q: %v", erg.ErrForbidden, g.title, errShareRevoked)
	}
	token, err := s.grains.Sessions().NewLoginToken(ctx, grains.RemoteGrain, g.id, g.userID, "")
	if err != nil {
		return erg.Grain{}, err
	}
	out.URL = s.origin(g.id) + "/_erg/login?token=" + url.QueryEscape(token)
	return out, nil
}

// Handle is a grain a friend's node shared, on this node's grain origin
// for it: the proxy's view of it (webui.GrainHandle), and the API's. It
// is used as a grains.Handle is.
type Handle struct {
	s *Service
	g *remoteGrain
}

// Describe returns the grain as who sees it, if it was shared with who.
func (rh Handle) Describe(ctx context.Context, who erg.User) (erg.Grain, error) {
	if rh.g.userID != who.ID {
		return erg.Grain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, rh.g.id)
	}
	return rh.s.remoteToAPI(rh.g, rh.s.friends.Names(ctx)), nil
}

// Open is Describe with a one-time login URL for the grain's origin.
func (rh Handle) Open(ctx context.Context, who erg.User) (erg.Grain, error) {
	if rh.g.userID != who.ID {
		return erg.Grain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, rh.g.id)
	}
	return rh.s.openRemote(ctx, who, rh.g)
}

// Redeem trades a one-time login token for a session on the grain.
func (rh Handle) Redeem(ctx context.Context, token string) (string, error) {
	return rh.s.grains.Sessions().Redeem(ctx, grains.RemoteGrain, rh.g.id, token)
}

// Viewer returns who holds session on the grain. A revoked share keeps its
// sessions: their requests are answered with why (Acquire), not a bare
// refusal.
func (rh Handle) Viewer(ctx context.Context, session string) (erg.Viewer, error) {
	s, g := rh.s, rh.g
	se, err := s.grains.Sessions().Check(ctx, session, g.id, func(ctx context.Context, hash string) (grains.Session, error) {
		return s.loadRemoteSession(ctx, hash, g)
	})
	if err != nil {
		return erg.Viewer{}, err
	}
	s.mu.Lock()
	perms := g.perms
	s.mu.Unlock()
	return erg.Viewer{UserID: se.UserID, Username: se.Username, Permissions: perms, SessionID: se.SessionID,
		Session: se.Context(), Expires: se.Expires, Account: se.AccountID}, nil
}

// loadRemoteSession reads a session on a friend's grain: only the user
// it was shared with holds one.
func (s *Service) loadRemoteSession(ctx context.Context, hash string, g *remoteGrain) (grains.Session, error) {
	var expires int64
	var accountID sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT expires_at, user_id FROM grain_sessions WHERE hash = ? AND remote_grain_id = ?`, hash, g.id).
		Scan(&expires, &accountID)
	if err != nil || accountID.String != g.userID {
		return grains.Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	u, err := s.accounts.User(ctx, g.userID)
	if err != nil {
		return grains.Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	return grains.Session{
		GrainID:   g.id,
		Expires:   time.Unix(expires, 0),
		AccountID: g.userID,
		Username:  u.Username,
		UserID:    s.derive("user-id", g.userID, g.id),
		SessionID: s.derive("session-id", hash),
	}, nil
}

// restoreRemote returns a transport into a remote grain with role ("":
// the share's), restoring the share over Cap'n Proto if this node has no
// live capability for it.
func (s *Service) restoreRemote(ctx context.Context, g *remoteGrain, role string) (*fed.Transport, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.caps[role]; ok {
		select {
		case <-c.conn.Done():
			c.rt.Grain.Release()
			delete(g.caps, role)
		default:
			return c.rt, nil
		}
	}
	s.mu.Lock()
	revoked := g.revoked
	s.mu.Unlock()
	if revoked {
		return nil, errShareRevoked
	}
	id, err := peer.Decode(g.peer)
	if err != nil {
		return nil, err
	}
	u, err := s.accounts.User(ctx, g.userID)
	if err != nil {
		return nil, err
	}
	var c *friends.Conn
	var grain fed.Grain
	var info fed.ShareInfo
	for attempt := 0; ; attempt++ {
		if c, err = s.friends.Gateway(ctx, id); err != nil {
			return nil, err
		}
		grain, info, err = fed.RestoreAs(ctx, c.Gateway(), g.token, u.Username, role)
		if err == nil || attempt > 0 || ctx.Err() != nil || !friends.ConnectionLost(err) {
			break
		}
		// The connection may have died without saying so yet: dial anew.
		s.friends.Drop(id, c)
	}
	if errors.Is(err, fed.ErrUnknownToken) {
		g.mu.Unlock()
		s.markRevoked(g)
		g.mu.Lock()
		return nil, errShareRevoked
	}
	if err != nil {
		return nil, err
	}
	if role == "" {
		if err := s.learn(g, info); err != nil {
			// What the share had stays, and the restore serves: only
			// the log says the friend's node broke the rules.
			s.log.Warn("a friend's node described a shared grain against the rules; kept what was known", "grain", g.id, "peer", g.peer, "err", err)
		}
	}
	if g.caps == nil {
		g.caps = map[string]liveCap{}
	}
	rt := &fed.Transport{Grain: grain}
	g.caps[role] = liveCap{rt: rt, conn: c.RPC()}
	return rt, nil
}

// checkInfo is what a friend's node may say of a grain it shares, when
// it offers the share and each time it answers a restore: names are kept
// comma-joined, and the apiPath is put before request paths.
func checkInfo(info fed.ShareInfo) error {
	if strings.ContainsAny(info.Role, ",") || strings.Contains(strings.Join(info.Permissions, ""), ",") ||
		strings.Contains(strings.Join(info.Offers, ""), ",") {
		return erg.E(erg.Invalid, "role, permission and offer names hold no commas")
	}
	if info.APIPath != "" && !apppkg.IsAPIPath(info.APIPath) {
		return erg.E(erg.Invalid, "the offered grain's apiPath is not a clean absolute path ending in /")
	}
	return nil
}

// learn keeps what the owner's node says of a grain now (its role, title,
// what its app offers and which roles the share hands on), which may have
// changed since the share came, or the share may be from before some of
// it was sent. What the offer would have been refused for is refused
// here too, and what was kept stays: the capability it came with still
// serves, under the roles known before.
func (s *Service) learn(g *remoteGrain, info fed.ShareInfo) error {
	if err := checkInfo(info); err != nil {
		return err
	}
	s.mu.Lock()
	changed := g.apiPath != info.APIPath || g.role != info.Role || !slices.Equal(g.perms, info.Permissions) || !slices.Equal(g.offers, info.Offers) ||
		rolesJSON(g.roles) != rolesJSON(handedOn(info)) || info.Title != "" && g.title != info.Title
	g.role, g.perms, g.offers, g.roles, g.apiPath = info.Role, info.Permissions, info.Offers, handedOn(info), info.APIPath
	if info.Title != "" {
		g.title = info.Title
	}
	role, perms, offers, roles, title, apiPath := g.role, strings.Join(g.perms, ","), strings.Join(g.offers, ","), rolesJSON(g.roles), g.title, g.apiPath
	s.mu.Unlock()
	if changed {
		s.db.Exec(`UPDATE remote_grains SET role = ?, permissions = ?, offers = ?, roles = ?, title = ?, api_path = ? WHERE id = ?`,
			role, perms, offers, roles, title, apiPath, g.id)
	}
	return nil
}

// handedOn is the roles a share's info says it hands on; an owner's node
// from before roles were sent hands on only the share's own.
func handedOn(info fed.ShareInfo) []erg.Role {
	if len(info.Roles) == 0 {
		return []erg.Role{{Name: info.Role, Permissions: info.Permissions}}
	}
	return info.Roles
}

// dropRT forgets a capability that failed, so the next request
// restores the share again.
func (g *remoteGrain) dropRT(role string, t *fed.Transport) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.caps[role]; ok && c.rt == t {
		c.rt.Grain.Release()
		delete(g.caps, role)
	}
}

// Acquire returns a transport into a remote grain. A capability
// lost with its connection (the owner's node restarted, the network
// dropped) is restored again on the next request, which is retried once
// if it had no body.
func (rh Handle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return rh.AcquireAs(ctx, "")
}

// AcquireAs is Acquire with a role the share hands on (one of its
// Roles; "" is the share's own), which the owner's node enforces: the
// powerbox hands on less than the share gives this way.
func (rh Handle) AcquireAs(ctx context.Context, role string) (http.RoundTripper, func(), error) {
	s, g := rh.s, rh.g
	s.mu.Lock()
	if role == g.role {
		role = ""
	}
	known := role == "" || slices.ContainsFunc(g.roles, func(r erg.Role) bool { return r.Name == role })
	s.mu.Unlock()
	if !known {
		return nil, nil, erg.E(erg.Forbidden, "the share of %q does not hand on the role %q", g.title, role)
	}
	if _, err := s.restoreRemote(ctx, g, role); err != nil && !errors.Is(err, errShareRevoked) {
		return nil, nil, err
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		for attempt := 0; ; attempt++ {
			t, err := s.restoreRemote(req.Context(), g, role)
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
				s.markRevoked(g)
				return revokedResponse(req), nil
			}
			g.dropRT(role, t)
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
