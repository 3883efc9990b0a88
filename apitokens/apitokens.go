// Package apitokens is grains' API tokens: secrets that let a program that
// is not a browser (a CalDAV or WebDAV client, git, a script) use one
// grain's API with one of its app's roles, on the node's API origin. It
// makes, lists and revokes them (the node keeps only a hash), and turns a
// request's token into the grain and the identity the grain is told, with
// a per-address rate limit in front.
package apitokens

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"erg"
	"erg/grains"
)

// MaxLifetime bounds a token's expiry; longer means "never".
const MaxLifetime = 366 * 24 * time.Hour

// Prefix starts every token, so one found in a log or a repository can be
// told for what it is.
const Prefix = "ergapi_"

// Config is what the service needs from the node.
type Config struct {
	DB     *sql.DB
	Grains *grains.Service
	Log    *slog.Logger
	// Derive makes a stable identifier from the node's key and parts; the
	// grain is told the same user id for a token made for a user as for
	// that user's own sessions.
	Derive func(parts ...string) string
	// UserByName finds a local account (package accounts).
	UserByName func(ctx context.Context, name string) (erg.User, error)
	// APIURL is the node's API origin, such as http://api.localhost:6080.
	APIURL func() string
	Limits Limits
}

// Service is the node's grain API tokens.
type Service struct {
	cfg    Config
	db     *sql.DB
	grains *grains.Service
	log    *slog.Logger
	limit  *addrLimiter

	mu   sync.Mutex
	live map[string]*live // by token id: what cuts its open requests
}

// live is the context of a token's open requests, cancelled when it is
// revoked.
type live struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// New is the API tokens in cfg.DB of cfg.Grains' grains.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, db: cfg.DB, grains: cfg.Grains, log: cfg.Log,
		limit: newAddrLimiter(cfg.Limits.withDefaults()), live: map[string]*live{}}
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "t" + idEncoding.EncodeToString(b)
}

// New makes an API token for one of who's grains with one of its app's
// roles. Only a grain's owner makes them, as only the owner shares it,
// and only for an app whose manifest says where its API is (apiPath).
func (s *Service) New(ctx context.Context, who erg.User, grainID string, req erg.GrainTokenRequest) (erg.GrainToken, error) {
	g, err := s.grains.Own(who, grainID)
	if err != nil {
		return erg.GrainToken{}, err
	}
	m := g.App()
	if m.APIPath == "" {
		return erg.GrainToken{}, fmt.Errorf("%w: %s offers no API (its manifest has no apiPath), so its grains take no API tokens", erg.ErrInvalid, m.Name)
	}
	if _, ok := m.Role(req.Role); !ok {
		var names []string
		for _, r := range m.Roles {
			names = append(names, r.Name)
		}
		return erg.GrainToken{}, fmt.Errorf("%w: %s has no role %q (it has: %s)", erg.ErrInvalid, m.Name, req.Role, strings.Join(names, ", "))
	}
	label := strings.TrimSpace(req.Label)
	if len(label) > 100 {
		return erg.GrainToken{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	if req.ExpiresIn < 0 || time.Duration(req.ExpiresIn)*time.Second > MaxLifetime {
		return erg.GrainToken{}, fmt.Errorf("%w: a token expires within a year, or never (0)", erg.ErrInvalid)
	}
	var forID any
	forName := ""
	if name := strings.TrimSpace(req.ForUser); name != "" {
		u, err := s.cfg.UserByName(ctx, name)
		if err != nil {
			return erg.GrainToken{}, fmt.Errorf("%w: no user %q on this node", erg.ErrInvalid, name)
		}
		forID, forName = u.ID, u.Username
	}
	now := time.Now()
	t := erg.GrainToken{
		ID: newID(), GrainID: grainID, Role: req.Role, Label: label, ForUser: forName,
		Created: time.Unix(now.Unix(), 0), Token: Prefix + grains.RandomToken(), URL: s.cfg.APIURL(),
	}
	var expires int64
	if req.ExpiresIn > 0 {
		t.Expires = time.Unix(now.Unix()+req.ExpiresIn, 0)
		expires = t.Expires.Unix()
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO grain_tokens (id, hash, grain_id, role, created_by, for_user, label, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, grains.HashToken(t.Token), grainID, t.Role, who.ID, forID, t.Label, now.Unix(), expires); err != nil {
		return erg.GrainToken{}, fmt.Errorf("new API token: %w", err)
	}
	s.log.Info("grain API token made", "grain", grainID, "token", t.ID, "role", t.Role, "for", forName)
	return t, nil
}

// List lists the API tokens of one of who's grains, without their secrets.
func (s *Service) List(ctx context.Context, who erg.User, grainID string) ([]erg.GrainToken, error) {
	if _, err := s.grains.Own(who, grainID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT t.id, t.role, t.label, coalesce(u.username, ''), t.created_at, t.expires_at, t.last_used
		FROM grain_tokens t LEFT JOIN users u ON u.id = t.for_user WHERE t.grain_id = ? ORDER BY t.created_at, t.id`, grainID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.GrainToken{}
	for rows.Next() {
		t := erg.GrainToken{GrainID: grainID}
		var created, expires, used int64
		if err := rows.Scan(&t.ID, &t.Role, &t.Label, &t.ForUser, &created, &expires, &used); err != nil {
			return nil, err
		}
		t.Created = time.Unix(created, 0)
		if expires > 0 {
			t.Expires = time.Unix(expires, 0)
		}
		if used > 0 {
			t.LastUsed = time.Unix(used, 0)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Revoke deletes one of the API tokens of who's grains: the next request
// with it is refused, and requests open with it are cut.
func (s *Service) Revoke(ctx context.Context, who erg.User, tokenID string) error {
	var grainID string
	err := s.db.QueryRowContext(ctx, `SELECT grain_id FROM grain_tokens WHERE id = ?`, tokenID).Scan(&grainID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: no API token %q", erg.ErrNotFound, tokenID)
	}
	if err != nil {
		return err
	}
	if _, err := s.grains.Own(who, grainID); err != nil {
		return fmt.Errorf("%w: no API token %q", erg.ErrNotFound, tokenID)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM grain_tokens WHERE id = ?`, tokenID); err != nil {
		return fmt.Errorf("revoke API token: %w", err)
	}
	s.cut(tokenID)
	s.log.Info("grain API token revoked", "grain", grainID, "token", tokenID)
	return nil
}

// cut cancels the open requests of a token that is gone.
func (s *Service) cut(tokenID string) {
	s.mu.Lock()
	l := s.live[tokenID]
	delete(s.live, tokenID)
	s.mu.Unlock()
	if l != nil {
		l.cancel()
	}
}

// CutGone cuts the open requests of tokens the database no longer has:
// removing a user removes the tokens they made and those made for them
// (ON DELETE CASCADE), and their requests must end with them.
func (s *Service) CutGone(ctx context.Context) {
	s.mu.Lock()
	var ids []string
	for id := range s.live {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		var one int
		if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM grain_tokens WHERE id = ?`, id).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			s.cut(id)
		}
	}
}

func (s *Service) liveContext(tokenID string) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[tokenID]
	if l == nil {
		ctx, cancel := context.WithCancel(context.Background())
		l = &live{ctx, cancel}
		s.live[tokenID] = l
	}
	return l.ctx
}

// Access is what a request that carried a good token may do.
type Access struct {
	GrainID string
	TokenID string
	// APIPath is where the grain's app serves its API: the request's path
	// goes below it.
	APIPath string
	// Viewer is who the grain is told is asking: the token's role, and the
	// user it was made for, if any. Its Session is cancelled when the
	// token is revoked.
	Viewer erg.Viewer
}

// Authenticate checks a request's token, from the client address addr.
// Every request counts against addr's rate, and a bad token against its
// much smaller allowance of failures; past either the answer is
// erg.ErrTooMany without looking at the token, so guessing cannot go
// faster than the allowance.
func (s *Service) Authenticate(ctx context.Context, addr, secret string) (Access, error) {
	if wait, ok := s.limit.allow(addr); !ok {
		return Access{}, fmt.Errorf("%w: too many API requests from your address; try again in %s", erg.ErrTooMany, wait.Round(time.Second))
	}
	a, err := s.check(ctx, secret)
	if errors.Is(err, erg.ErrUnauthorized) {
		s.limit.failed(addr)
	}
	return a, err
}

func (s *Service) check(ctx context.Context, secret string) (Access, error) {
	bad := fmt.Errorf("%w: unknown, revoked or expired API token", erg.ErrUnauthorized)
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 200 {
		return Access{}, bad
	}
	var id, grainID, role string
	var forUser sql.NullString
	var expires, used int64
	err := s.db.QueryRowContext(ctx, `SELECT id, grain_id, role, for_user, expires_at, last_used FROM grain_tokens WHERE hash = ?`,
		grains.HashToken(secret)).Scan(&id, &grainID, &role, &forUser, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return Access{}, bad
	}
	if err != nil {
		return Access{}, err
	}
	now := time.Now()
	if expires > 0 && now.Unix() >= expires {
		return Access{}, bad
	}
	g, err := s.grains.Lookup(grainID)
	if err != nil {
		return Access{}, bad // the grain is being deleted
	}
	m := g.App()
	if m.APIPath == "" {
		return Access{}, fmt.Errorf("%w: this grain's app no longer offers an API", erg.ErrForbidden)
	}
	r, ok := m.Role(role)
	if !ok {
		return Access{}, fmt.Errorf("%w: this grain's app no longer has the token's role %q", erg.ErrForbidden, role)
	}
	if now.Unix()-used >= 60 {
		// To the minute is enough to tell a token in use from one
		// forgotten, and costs a write a minute at most.
		s.db.ExecContext(ctx, `UPDATE grain_tokens SET last_used = ? WHERE id = ?`, now.Unix(), id)
	}
	v := erg.Viewer{
		Permissions: r.Permissions,
		SessionID:   s.cfg.Derive("api-token", id),
		Session:     s.liveContext(id),
		Account:     forUser.String,
	}
	if expires > 0 {
		v.Expires = time.Unix(expires, 0)
	}
	if forUser.Valid {
		u, err := s.userByID(ctx, forUser.String)
		if err != nil {
			return Access{}, err
		}
		v.Username = u
		v.UserID = s.cfg.Derive("user-id", forUser.String, grainID)
	}
	return Access{GrainID: grainID, TokenID: id, APIPath: m.APIPath, Viewer: v}, nil
}

func (s *Service) userByID(ctx context.Context, id string) (string, error) {
	var name string
	err := s.db.QueryRowContext(ctx, `SELECT username FROM users WHERE id = ?`, id).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: unknown, revoked or expired API token", erg.ErrUnauthorized)
	}
	return name, err
}
