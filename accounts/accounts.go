// Package accounts is the node's local accounts: the owner and the users
// they invite, their passwords, their sign-ins to the node's pages (web
// sessions, each with its CSRF token) and the API tokens programs use in
// their name.
//
// A Service keeps its state in the node's database (tables users,
// web_sessions, invites and api_tokens, made by package db) and, in
// memory, only the one-time setup token and the bound on concurrent
// password hashes. Its errors have a kind (erg.KindOf).
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"erg"
)

const (
	// OwnerID is the owner's account id. Grains were told it before
	// accounts existed, so it stays this literal (see package db).
	OwnerID = "owner"
	// SessionTTL is how long a sign-in to the node's pages lasts.
	SessionTTL = 14 * 24 * time.Hour
	// InviteTTL is how long an invite link stays usable.
	InviteTTL = 7 * 24 * time.Hour
)

// Config is what a Service needs. DB is required; the rest have defaults.
type Config struct {
	DB  *sql.DB
	Log *slog.Logger // default: discard
	// Owner is the owner's username until they choose one at setup.
	Owner string
	// URL is the node's web address, asked each time a setup or invite
	// link is made; default none (links are paths only).
	URL func() string
	// Renamed, if set, is called after a user's username changed (the
	// owner's, at setup), so whatever keeps usernames can forget them.
	Renamed func(userID string)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// HashSlots bounds how many password hashes run at once, each taking
	// argon2's memory; default 2.
	HashSlots int
}

// Service is the accounts of one node. Its methods are safe to call
// concurrently.
type Service struct {
	db      *sql.DB
	log     *slog.Logger
	url     func() string
	renamed func(userID string)
	now     func() time.Time
	slots   chan struct{} // bounds concurrent password hashes

	mu         sync.Mutex
	setupToken string // spent by the owner's setup; "" once set up
}

// New opens the accounts in cfg.DB. Until the owner has chosen a
// password it makes the one-time setup token (SetupURL).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("accounts: no database")
	}
	s := &Service{db: cfg.DB, log: cfg.Log, url: cfg.URL, renamed: cfg.Renamed, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.url == nil {
		s.url = func() string { return "" }
	}
	if s.renamed == nil {
		s.renamed = func(string) {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.HashSlots <= 0 {
		cfg.HashSlots = defaultHashSlots
	}
	s.slots = make(chan struct{}, cfg.HashSlots)
	// Until the owner chooses a username, they are who the config says.
	if _, err := s.db.ExecContext(ctx, `UPDATE users SET username = ? WHERE id = ? AND username = ''`, strings.ToLower(cfg.Owner), OwnerID); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	need, err := s.SetupNeeded(ctx)
	if err != nil {
		return nil, err
	}
	if need {
		s.setupToken = randomToken()
	}
	return s, nil
}

// SetupURL is the one-time link that lets the owner choose a password, or
// "" when that is done.
func (s *Service) SetupURL() string {
	s.mu.Lock()
	token := s.setupToken
	s.mu.Unlock()
	if token == "" {
		return ""
	}
	return s.url() + "/setup?token=" + token
}

// SetupNeeded says whether the owner has yet to choose a password.
func (s *Service) SetupNeeded(ctx context.Context) (bool, error) {
	var hash string
	err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, OwnerID).Scan(&hash)
	if err != nil {
		return false, fmt.Errorf("accounts: %w", err)
	}
	return hash == "", nil
}

// Setup spends the setup token: the owner takes username and password,
// and is signed in (the web session is returned).
func (s *Service) Setup(ctx context.Context, token, username, password string) (erg.User, string, error) {
	s.mu.Lock()
	want := s.setupToken
	s.mu.Unlock()
	if want == "" {
		return erg.User{}, "", fmt.Errorf("%w: this node is already set up; sign in instead", erg.ErrForbidden)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return erg.User{}, "", fmt.Errorf("%w: the setup link is wrong: open the one `erg run` printed", erg.ErrForbidden)
	}
	username, err := CheckUsername(username)
	if err != nil {
		return erg.User{}, "", err
	}
	if err := checkNewPassword(password); err != nil {
		return erg.User{}, "", err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return erg.User{}, "", err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET username = ?, password_hash = ? WHERE id = ? AND password_hash = ''`, username, hash, OwnerID)
	if err != nil {
		return erg.User{}, "", fmt.Errorf("setup: %w", err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return erg.User{}, "", fmt.Errorf("%w: this node is already set up; sign in instead", erg.ErrForbidden)
	}
	s.mu.Lock()
	s.setupToken = ""
	s.mu.Unlock()
	s.renamed(OwnerID)
	s.log.Info("owner account set up", "username", username)
	u, err := s.User(ctx, OwnerID)
	if err != nil {
		return erg.User{}, "", err
	}
	session, err := s.newWebSession(ctx, u.ID)
	return u, session, err
}

// User is the account with id.
func (s *Service) User(ctx context.Context, id string) (erg.User, error) {
	var u erg.User
	var owner bool
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, username, is_owner, created_at FROM users WHERE id = ?`, id).Scan(&u.ID, &u.Username, &owner, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: no such user", erg.ErrNotFound)
	}
	u.Owner, u.Created = owner, time.Unix(created, 0)
	return u, err
}

// UserByName is the account called name (in any case).
func (s *Service) UserByName(ctx context.Context, name string) (erg.User, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT id FROM users WHERE username = ?`, strings.ToLower(strings.TrimSpace(name))).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, fmt.Errorf("%w: no user %q on this node", erg.ErrNotFound, name)
	}
	if err != nil {
		return erg.User{}, err
	}
	return s.User(ctx, id)
}

// Owner is the node owner's account.
func (s *Service) Owner(ctx context.Context) (erg.User, error) { return s.User(ctx, OwnerID) }

// Users lists every account, the owner first; only the owner may.
func (s *Service) Users(ctx context.Context, who erg.User) ([]erg.User, error) {
	if err := RequireOwner(who); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, username, is_owner, created_at FROM users ORDER BY is_owner DESC, username`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.User{}
	for rows.Next() {
		var u erg.User
		var created int64
		if err := rows.Scan(&u.ID, &u.Username, &u.Owner, &created); err != nil {
			return nil, err
		}
		u.Created = time.Unix(created, 0)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Removable is the account called username if who may remove it: who is
// the owner, and it is someone else's. Removing a user is the caller's
// work (their grains go first), ending with Delete.
func (s *Service) Removable(ctx context.Context, who erg.User, username string) (erg.User, error) {
	if err := RequireOwner(who); err != nil {
		return erg.User{}, err
	}
	u, err := s.UserByName(ctx, username)
	if err != nil {
		return erg.User{}, err
	}
	if u.Owner {
		return erg.User{}, fmt.Errorf("%w: the owner cannot be removed", erg.ErrInvalid)
	}
	return u, nil
}

// Delete removes the account with id, and with it (by the database's
// foreign keys) its web sessions, API tokens and whatever else refers to
// it. The owner's account cannot be deleted.
func (s *Service) Delete(ctx context.Context, id string) error {
	if id == OwnerID {
		return fmt.Errorf("%w: the owner cannot be removed", erg.ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	return nil
}

// RequireOwner refuses (erg.ErrForbidden) anyone but the node's owner.
func RequireOwner(who erg.User) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can do that", erg.ErrForbidden)
	}
	return nil
}

var usernameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// CheckUsername is name as accounts store it (trimmed, lower case), or
// erg.ErrInvalid when it is no username: 1-32 lowercase letters, digits,
// '.', '_' or '-', starting with a letter or digit.
func CheckUsername(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if !usernameRe.MatchString(name) {
		return "", fmt.Errorf("%w: a username is 1-32 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", erg.ErrInvalid)
	}
	return name, nil
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is how secrets (sessions, invites, API tokens) are stored:
// the same as the node stores its other tokens.
func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// newShortID is a random id for rows people name in commands (invites,
// tokens); it is not a secret.
func newShortID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return strings.NewReplacer("-", "x", "_", "y").Replace(base64.RawURLEncoding.EncodeToString(b))
}

// Usernames maps account ids to usernames.
func (s *Service) Usernames(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, username FROM users`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, rows.Err()
}
