// Package shares is the node's shares of its grains: sharing links for
// local users and anonymous visitors, the shares a user holds, and their
// revocation. A share to a friend's node is made and revoked over
// federation, which the node wires in (Config.ShareWithFriend,
// Config.RevokeFriendShare).
package shares

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"erg"
	"erg/grains"
)

// MaxLifetime bounds a share's expiry; longer means "never".
const MaxLifetime = 366 * 24 * time.Hour

// Config is what the service needs from the node.
type Config struct {
	DB     *sql.DB
	Grains *grains.Service
	Log    *slog.Logger
	// UserByName finds a local account (package accounts).
	UserByName func(ctx context.Context, name string) (erg.User, error)
	// URL is the node's web address, for sharing links.
	URL func() string
	// ShareWithFriend makes a share for a friend's node and delivers it
	// there; a grain is shared with a friend only through it.
	ShareWithFriend func(ctx context.Context, who erg.User, g *grains.Info, req erg.ShareRequest) (erg.Share, error)
	// RevokeFriendShare tells a friend's node a share of theirs is gone.
	RevokeFriendShare func(shareID, friendPeer, hash string)
}

// Service is the node's shares.
type Service struct {
	cfg    Config
	db     *sql.DB
	grains *grains.Service
	log    *slog.Logger
}

// New is the shares in cfg.DB of cfg.Grains' grains.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, db: cfg.DB, grains: cfg.Grains, log: cfg.Log}
}

// NewID is a random id for rows people name in commands (shares,
// invites, tokens); it is not a secret.
func NewID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return strings.NewReplacer("-", "x", "_", "y").Replace(base64.RawURLEncoding.EncodeToString(b))
}

// New shares one of who's grains. Only a grain's owner shares it.
func (s *Service) New(ctx context.Context, who erg.User, grainID string, req erg.ShareRequest) (erg.Share, error) {
	g, err := s.grains.Own(who, grainID)
	if err != nil {
		return erg.Share{}, err
	}
	m := g.App()
	if _, ok := m.Role(req.Role); !ok {
		var names []string
		for _, r := range m.Roles {
			names = append(names, r.Name)
		}
		return erg.Share{}, fmt.Errorf("%w: %s has no role %q (it has: %s)", erg.ErrInvalid, m.Name, req.Role, strings.Join(names, ", "))
	}
	if strings.TrimSpace(req.Friend) != "" {
		return s.cfg.ShareWithFriend(ctx, who, g, req)
	}
	label := strings.TrimSpace(req.Label)
	if len(label) > 100 {
		return erg.Share{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	if req.ExpiresIn < 0 || time.Duration(req.ExpiresIn)*time.Second > MaxLifetime {
		return erg.Share{}, fmt.Errorf("%w: a share expires within a year, or never (0)", erg.ErrInvalid)
	}
	var forUser *erg.User
	if strings.TrimSpace(req.ForUser) != "" {
		if req.Anonymous {
			return erg.Share{}, fmt.Errorf("%w: a share for one user cannot also allow anonymous use", erg.ErrInvalid)
		}
		u, err := s.cfg.UserByName(ctx, req.ForUser)
		if err != nil {
			return erg.Share{}, fmt.Errorf("%w: no user %q on this node", erg.ErrInvalid, req.ForUser)
		}
		if u.ID == who.ID {
			return erg.Share{}, fmt.Errorf("%w: you already own this grain", erg.ErrInvalid)
		}
		forUser = &u
	}
	now := time.Now()
	sh := erg.Share{
		ID: NewID(), GrainID: grainID, Role: req.Role, Anonymous: req.Anonymous, Label: label,
		Created: time.Unix(now.Unix(), 0),
	}
	var expires int64
	if req.ExpiresIn > 0 {
		sh.Expires = time.Unix(now.Unix()+req.ExpiresIn, 0)
		expires = sh.Expires.Unix()
	}
	token := grains.RandomToken()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return erg.Share{}, err
	}
	defer tx.Rollback()
	var forID any
	if forUser != nil {
		forID, sh.ForUser = forUser.ID, forUser.Username
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO shares (id, hash, grain_id, role, for_user, anonymous, label, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sh.ID, grains.HashToken(token), grainID, sh.Role, forID, sh.Anonymous, sh.Label, now.Unix(), expires); err != nil {
		return erg.Share{}, fmt.Errorf("new share: %w", err)
	}
	if forUser != nil {
		// A share for a local user is theirs at once, link or not.
		if _, err := tx.ExecContext(ctx, `INSERT INTO share_holders (user_id, share_id, grain_id, added_at) VALUES (?, ?, ?, ?)`,
			forUser.ID, sh.ID, grainID, now.Unix()); err != nil {
			return erg.Share{}, err
		}
		sh.Holders = []string{forUser.Username}
	}
	if err := tx.Commit(); err != nil {
		return erg.Share{}, err
	}
	sh.URL = s.cfg.URL() + "/s/" + token
	s.log.Info("grain shared", "grain", grainID, "share", sh.ID, "role", sh.Role, "for", sh.ForUser, "anonymous", sh.Anonymous)
	return sh, nil
}

// List lists the shares of one of who's grains.
func (s *Service) List(ctx context.Context, who erg.User, grainID string) ([]erg.Share, error) {
	if _, err := s.grains.Own(who, grainID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.role, coalesce(u.username, ''), s.anonymous, s.label, s.created_at, s.expires_at,
			(SELECT group_concat(hu.username, ',') FROM share_holders h JOIN users hu ON hu.id = h.user_id WHERE h.share_id = s.id),
			coalesce(f.name, ''), s.friend_user
		FROM shares s LEFT JOIN users u ON u.id = s.for_user LEFT JOIN friends f ON f.peer = s.friend_peer
		WHERE s.grain_id = ? ORDER BY s.created_at, s.id`, grainID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.Share{}
	for rows.Next() {
		sh := erg.Share{GrainID: grainID}
		var created, expires int64
		var holders sql.NullString
		if err := rows.Scan(&sh.ID, &sh.Role, &sh.ForUser, &sh.Anonymous, &sh.Label, &created, &expires, &holders, &sh.Friend, &sh.FriendUser); err != nil {
			return nil, err
		}
		sh.Created = time.Unix(created, 0)
		if expires > 0 {
			sh.Expires = time.Unix(expires, 0)
		}
		if holders.String != "" {
			sh.Holders = strings.Split(holders.String, ",")
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}

// Revoke ends one of the shares of who's grains. The share's sessions end at once:
// their next request is refused and their open websockets are closed.
func (s *Service) Revoke(ctx context.Context, who erg.User, shareID string) error {
	var grainID, friendPeer, hash string
	err := s.db.QueryRowContext(ctx, `SELECT grain_id, coalesce(friend_peer, ''), hash FROM shares WHERE id = ?`, shareID).Scan(&grainID, &friendPeer, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: no share %q", erg.ErrNotFound, shareID)
	}
	if err != nil {
		return err
	}
	if _, err := s.grains.Own(who, grainID); err != nil {
		return fmt.Errorf("%w: no share %q", erg.ErrNotFound, shareID)
	}
	// Deleting the share deletes its holders, login tokens and sessions
	// with it (ON DELETE CASCADE).
	if _, err := s.db.ExecContext(ctx, `DELETE FROM shares WHERE id = ?`, shareID); err != nil {
		return fmt.Errorf("revoke share: %w", err)
	}
	s.grains.Sessions().Drop(func(se grains.Session) bool { return se.ShareID == shareID })
	if friendPeer != "" {
		s.cfg.RevokeFriendShare(shareID, friendPeer, hash)
	}
	s.log.Info("share revoked", "grain", grainID, "share", shareID)
	return nil
}

// Open opens a sharing link for who (nil: an anonymous visitor), and
// records the share as theirs.
func (s *Service) Open(ctx context.Context, who *erg.User, token string) (erg.Grain, error) {
	var shareID, grainID, role string
	var forUser sql.NullString
	var anonymous bool
	err := s.db.QueryRowContext(ctx, `SELECT id, grain_id, role, for_user, anonymous FROM shares
		WHERE hash = ? AND friend_peer IS NULL AND (expires_at = 0 OR expires_at > ?)`, grains.HashToken(token), time.Now().Unix()).
		Scan(&shareID, &grainID, &role, &forUser, &anonymous)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.Grain{}, fmt.Errorf("%w: this sharing link does not work: it was revoked, has expired, or is mistyped", erg.ErrNotFound)
	}
	if err != nil {
		return erg.Grain{}, err
	}
	g, err := s.grains.Lookup(grainID)
	if err != nil {
		return erg.Grain{}, err
	}
	switch {
	case who == nil && (forUser.Valid || !anonymous):
		return erg.Grain{}, fmt.Errorf("%w: sign in to open this link", erg.ErrUnauthorized)
	case who == nil:
		return s.grains.WithLoginURL(ctx, g, "", shareID, role)
	case forUser.Valid && forUser.String != who.ID:
		return erg.Grain{}, fmt.Errorf("%w: this link was shared with another user", erg.ErrForbidden)
	}
	if g.OwnerID() != who.ID {
		if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO share_holders (user_id, share_id, grain_id, added_at) VALUES (?, ?, ?, ?)`,
			who.ID, shareID, grainID, time.Now().Unix()); err != nil {
			return erg.Grain{}, fmt.Errorf("record share: %w", err)
		}
	}
	h, err := s.grains.Handle(grainID)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.Open(ctx, *who)
}
