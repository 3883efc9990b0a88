package fedgrains

// The owner's side of shares between friends: shares this node's users
// make for friends' nodes, and the grain capabilities it serves them.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/accounts"
	"erg/apppkg"
	"erg/fed"
	"erg/grains"
	"erg/shares"
)

// ShareWithFriend makes a share for a friend's node and delivers it there
// over Cap'n Proto. If the friend's node cannot take it, nothing is kept.
func (s *Service) ShareWithFriend(ctx context.Context, who erg.User, g *grains.Info, req erg.ShareRequest) (erg.Share, error) {
	if req.Anonymous || strings.TrimSpace(req.ForUser) != "" {
		return erg.Share{}, fmt.Errorf("%w: a share to a friend's node is for that node's users, not local ones or anonymous", erg.ErrInvalid)
	}
	f, err := s.friends.ByName(ctx, req.Friend)
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
		if friendUser, err = accounts.CheckUsername(req.FriendUser); err != nil {
			return erg.Share{}, err
		}
	}
	label := strings.TrimSpace(req.Label)
	if len(label) > 100 {
		return erg.Share{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	if req.ExpiresIn < 0 || time.Duration(req.ExpiresIn)*time.Second > shares.MaxLifetime {
		return erg.Share{}, fmt.Errorf("%w: a share expires within a year, or never (0)", erg.ErrInvalid)
	}
	m, title := g.App(), g.Title()
	now := time.Now()
	sh := erg.Share{ID: shares.NewID(), GrainID: g.ID(), Role: req.Role, Label: label, Created: time.Unix(now.Unix(), 0),
		Friend: f.Name, FriendUser: friendUser}
	var expires int64
	if req.ExpiresIn > 0 {
		sh.Expires = time.Unix(now.Unix()+req.ExpiresIn, 0)
		expires = sh.Expires.Unix()
	}
	token := make([]byte, 32)
	rand.Read(token)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO shares (id, hash, grain_id, role, label, created_at, expires_at, friend_peer, friend_user)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sh.ID, grains.HashToken(string(token)), g.ID(), sh.Role, label, now.Unix(), expires, f.Peer, friendUser); err != nil {
		return erg.Share{}, fmt.Errorf("new share: %w", err)
	}
	offer := fed.Offer{Token: token, Owner: who.Username, User: friendUser, Info: shareInfo(m, title, sh.Role, sh.Role)}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = s.friends.Call(dctx, id, func(gw fed.Gateway) error { return fed.SendOffer(dctx, gw, offer) })
	if err != nil {
		s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM shares WHERE id = ?`, sh.ID)
		// The friend's refusal keeps its kind; one without (an older
		// node's, or no answer) is a request that could not be carried out.
		kind := erg.KindOf(err)
		if kind == erg.Internal {
			kind = erg.Invalid
		}
		return erg.Share{}, erg.E(kind, "%s did not take the share: %s", f.Name, erg.Message(err))
	}
	s.log.Info("grain shared with a friend", "grain", g.ID(), "share", sh.ID, "role", sh.Role, "friend", f.Name, "user", friendUser)
	return sh, nil
}

// RevokeFriendShare ends a revoked share's live capabilities and tells the
// friend's node.
func (s *Service) RevokeFriendShare(shareID, friendPeer, hash string) {
	s.revokeServers(shareID)
	id, err := peer.Decode(friendPeer)
	if err != nil {
		return
	}
	sum, err := hex.DecodeString(hash)
	if err != nil {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.friends.Call(ctx, id, func(gw fed.Gateway) error { return fed.SendWithdraw(ctx, gw, sum) })
		if err != nil {
			s.log.Debug("tell friend of a revoked share", "share", shareID, "err", err)
		}
	}()
}

func (s *Service) revokeServers(shareID string) {
	s.mu.Lock()
	servers := s.servers[shareID]
	delete(s.servers, shareID)
	s.mu.Unlock()
	for gs := range servers {
		gs.Revoke()
	}
}

// Restore implements fed.Shares: a friend's node turns a share token into
// a grain capability for one of its users.
func (s *Service) Restore(ctx context.Context, peerID, user string, token []byte, asked string) (*fed.GrainServer, fed.ShareInfo, error) {
	if err := s.await(ctx); err != nil {
		return nil, fed.ShareInfo{}, err
	}
	f, err := s.friends.ByPeer(ctx, peerID)
	if err != nil {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	hash := grains.HashToken(string(token))
	var shareID, grainID, role, friendUser string
	err = s.db.QueryRowContext(ctx, `SELECT id, grain_id, role, friend_user FROM shares
		WHERE hash = ? AND friend_peer = ? AND (expires_at = 0 OR expires_at > ?)`, hash, peerID, time.Now().Unix()).
		Scan(&shareID, &grainID, &role, &friendUser)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	if err != nil {
		return nil, fed.ShareInfo{}, err
	}
	uname, err := accounts.CheckUsername(user)
	if err != nil {
		return nil, fed.ShareInfo{}, erg.E(erg.Invalid, "the user name is not a valid erg username")
	}
	if friendUser != "" && subtle.ConstantTimeCompare([]byte(friendUser), []byte(uname)) != 1 {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	g, err := s.grains.Lookup(grainID)
	if err != nil {
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	m, title := g.App(), g.Title()
	if asked == "" {
		asked = role
	}
	info := shareInfo(m, title, role, asked)
	if info.Role == "" {
		return nil, fed.ShareInfo{}, erg.E(erg.Forbidden, "this share cannot hand on the role %q: it gives %q, and hands on only roles no higher", asked, role)
	}
	v := erg.Viewer{
		UserID:      s.derive("friend-user-id", peerID, uname, grainID),
		Username:    uname + "@" + f.Name,
		Permissions: info.Permissions,
		SessionID:   s.derive("friend-session", grains.RandomToken()),
	}
	gs := fed.NewGrainServer(s.grainTransport(grainID), func(r *http.Request) {
		fed.SetIdentity(r.Header, v.UserID, v.Username, v.Permissions, v.SessionID)
	})
	gs.OnRelease = func() {
		s.mu.Lock()
		delete(s.servers[shareID], gs)
		if len(s.servers[shareID]) == 0 {
			delete(s.servers, shareID)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	if s.servers[shareID] == nil {
		s.servers[shareID] = map[*fed.GrainServer]struct{}{}
	}
	s.servers[shareID][gs] = struct{}{}
	s.mu.Unlock()
	// A revocation between the lookup and now missed this server; look
	// again now that revocations see it.
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM shares WHERE id = ?`, shareID).Scan(&one); err != nil {
		gs.Revoke()
		gs.OnRelease()
		return nil, fed.ShareInfo{}, fed.ErrUnknownToken
	}
	s.log.Info("friend restored a share", "friend", f.Name, "user", uname, "grain", grainID, "role", info.Role)
	return gs, info, nil
}

// shareInfo describes a grain shared with role to the friend's node, as
// seen with the role as, one no higher than role; as higher than role
// (or unknown) leaves Role empty.
func shareInfo(m *apppkg.Manifest, title, role, as string) fed.ShareInfo {
	info := fed.ShareInfo{Title: title, AppName: m.Name, Offers: m.Offers, APIPath: m.APIPath}
	for _, r := range m.RolesWithin(role) {
		info.Roles = append(info.Roles, erg.Role{Name: r.Name, Title: r.Title, Permissions: r.Permissions})
		if r.Name == as {
			info.Role, info.Permissions = r.Name, r.Permissions
		}
	}
	return info
}

// grainTransport sends each request into a local grain, starting it if
// needed and keeping it running while the exchange lasts.
func (s *Service) grainTransport(grainID string) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if _, err := s.grains.Lookup(grainID); err != nil {
			return nil, err
		}
		rt, release, err := s.grains.Acquire(req.Context(), grainID)
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
