package grains

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"erg"
)

// loginTokenTTL is how long a printed grain link stays usable.
const loginTokenTTL = 5 * time.Minute

// sessionTTL is how long a grain-origin session lasts.
const sessionTTL = 30 * 24 * time.Hour

// Kind says whose grain a login token or session is for: the column of
// login_tokens and grain_sessions that names it.
type Kind string

// The kinds of grain a session is for.
const (
	LocalGrain  Kind = "grain_id"        // this node's own
	RemoteGrain Kind = "remote_grain_id" // a friend's, served on this node's origin for it
)

// Session is a grain session known to be in the database.
type Session struct {
	GrainID   string
	Expires   time.Time
	AccountID string // "" for an anonymous visitor
	Username  string
	ShareID   string // "" when the grain's owner opened it
	Role      string
	UserID    string // what the grain is told, derived once
	SessionID string

	ctx    context.Context // cancelled when the session is dropped
	cancel context.CancelFunc
}

// Context is cancelled when the session is dropped.
func (s Session) Context() context.Context { return s.ctx }

// Sessions is the table of grain sessions and one-time logins on grain
// origins, local grains' and friends' alike, with a cache of the sessions
// seen so the proxy's hot path reads no database.
type Sessions struct {
	db *sql.DB

	mu sync.RWMutex
	m  map[string]Session // by token hash
	// revokeGen counts session drops, so a session read from the database
	// while a drop runs is not cached after it.
	revokeGen uint64
	lastSweep time.Time // of expired sessions (forgetExpired)
}

// NewSessions is the session table in db.
func NewSessions(db *sql.DB) *Sessions { return &Sessions{db: db, m: map[string]Session{}} }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Redeem spends a one-time login token for a grain for a session.
func (t *Sessions) Redeem(ctx context.Context, kind Kind, grainID, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token", erg.ErrInvalid)
	}
	col := string(kind)
	now := time.Now()
	// Deleting is the redeeming: of two requests racing with one token,
	// exactly one deletes the row.
	var accountID, shareID sql.NullString
	err := t.db.QueryRowContext(ctx, `DELETE FROM login_tokens WHERE hash = ? AND `+col+` = ? AND expires_at > ? RETURNING user_id, share_id`,
		HashToken(token), grainID, now.Unix()).Scan(&accountID, &shareID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: login token is unknown, used or expired", erg.ErrForbidden)
	}
	if err != nil {
		return "", err
	}
	session := RandomToken()
	_, err = t.db.ExecContext(ctx, `INSERT INTO grain_sessions (hash, `+col+`, created_at, expires_at, user_id, share_id) VALUES (?, ?, ?, ?, ?, ?)`,
		HashToken(session), grainID, now.Unix(), now.Add(sessionTTL).Unix(), accountID, shareID)
	if err != nil {
		return "", err
	}
	t.forgetExpired(ctx, now)
	return session, nil
}

// NewLoginToken records a one-time login token for a grain.
func (t *Sessions) NewLoginToken(ctx context.Context, kind Kind, grainID, accountID, shareID string) (string, error) {
	token := RandomToken()
	_, err := t.db.ExecContext(ctx, `INSERT INTO login_tokens (hash, `+string(kind)+`, expires_at, user_id, share_id) VALUES (?, ?, ?, ?, ?)`,
		HashToken(token), grainID, time.Now().Add(loginTokenTTL).Unix(), nullable(accountID), nullable(shareID))
	if err != nil {
		return "", fmt.Errorf("create login token: %w", err)
	}
	return token, nil
}

// forgetExpired deletes expired login tokens and sessions, at most once a
// minute: every opened grain adds a session, and nothing else removes them.
func (t *Sessions) forgetExpired(ctx context.Context, now time.Time) {
	t.mu.Lock()
	if now.Sub(t.lastSweep) < time.Minute {
		t.mu.Unlock()
		return
	}
	t.lastSweep = now
	for h, s := range t.m {
		if !now.Before(s.Expires) {
			delete(t.m, h) // no request can use it any more
		}
	}
	t.mu.Unlock()
	t.db.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_at <= ?`, now.Unix())
	t.db.ExecContext(ctx, `DELETE FROM grain_sessions WHERE expires_at <= ?`, now.Unix())
}

// Check finds a live session, from memory when it can: the proxy asks on
// every request, and a database read there would cost more than the rest
// of the proxy. load reads it from the database; local and friends'
// grains share the cache and its revocation generation. The token's
// hash is made on the stack: a cached session costs no allocation.
func (t *Sessions) Check(ctx context.Context, token, grainID string, load func(ctx context.Context, hash string) (Session, error)) (Session, error) {
	now := time.Now()
	var buf hashBuf
	key := hashToken(&buf, token)
	for {
		t.mu.RLock()
		s, ok := t.m[string(key)]
		gen := t.revokeGen
		t.mu.RUnlock()
		if ok {
			if s.GrainID != grainID || !now.Before(s.Expires) {
				return Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
			}
			return s, nil
		}
		hash := string(key)
		s, err := load(ctx, hash)
		if err != nil {
			return Session{}, err
		}
		if s.ctx == nil {
			s.ctx, s.cancel = context.WithCancel(context.Background())
		}
		t.mu.Lock()
		if t.revokeGen != gen {
			// Access was taken away meanwhile: look again.
			t.mu.Unlock()
			continue
		}
		if _, ok := t.m[hash]; !ok {
			t.m[hash] = s
		}
		t.mu.Unlock()
		// The next turn returns the cached entry, this one or a racer's.
	}
}

// Drop ends every grain session that match selects: it is forgotten, so
// the next request on it is refused, and its context is cancelled, so
// open requests and websockets on it are cut.
func (t *Sessions) Drop(match func(Session) bool) {
	t.mu.Lock()
	t.revokeGen++
	var done []context.CancelFunc
	for h, s := range t.m {
		if match(s) {
			delete(t.m, h)
			done = append(done, s.cancel)
		}
	}
	t.mu.Unlock()
	for _, cancel := range done {
		cancel()
	}
}

// loadSession reads a session on one of this node's grains.
func (s *Service) loadSession(ctx context.Context, hash string, g *Info) (Session, error) {
	var expires, shareExpires int64
	var accountID, shareID, role, username sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT gs.expires_at, gs.user_id, gs.share_id, s.role, coalesce(s.expires_at, 0), u.username
		FROM grain_sessions gs LEFT JOIN shares s ON s.id = gs.share_id LEFT JOIN users u ON u.id = gs.user_id
		WHERE gs.hash = ? AND gs.grain_id = ?`, hash, g.id).Scan(&expires, &accountID, &shareID, &role, &shareExpires, &username)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	if err != nil {
		return Session{}, err
	}
	se := Session{
		GrainID:   g.id,
		Expires:   time.Unix(expires, 0),
		AccountID: accountID.String,
		Username:  username.String,
		ShareID:   shareID.String,
		Role:      role.String,
		SessionID: s.cfg.Derive("session-id", hash),
	}
	if shareExpires > 0 && shareExpires < expires {
		se.Expires = time.Unix(shareExpires, 0)
	}
	s.mu.RLock()
	owner, ownerRole := g.ownerID, g.app.OwnerRole
	s.mu.RUnlock()
	if se.ShareID == "" {
		// Without a share only the grain's owner has a session.
		if se.AccountID != owner {
			return Session{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
		}
		se.Role = ownerRole
	}
	if se.AccountID != "" {
		se.UserID = s.cfg.Derive("user-id", se.AccountID, g.id)
	}
	se.ctx, se.cancel = context.WithCancel(context.Background())
	return se, nil
}
