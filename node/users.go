package node

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"erg"
)

const (
	// webSessionTTL is how long a sign-in to the node's pages lasts.
	webSessionTTL = 14 * 24 * time.Hour
	// inviteTTL is how long an invite link stays usable.
	inviteTTL = 7 * 24 * time.Hour
	// ownerID is the owner's account id (see the second migration).
	ownerID = "owner"
)

// Argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes, one
// lane), which costs tens of milliseconds here. At most hashSlots hashes
// run at once, so a burst of logins cannot take more than that much memory.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	hashSlots    = 2
)

var usernameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// webState is the node's memory of who may do what, next to the database.
type webState struct {
	setupToken string        // spent by the owner's first sign-in; "" once set up
	hashSlots  chan struct{} // bounds concurrent password hashes
	// revokeGen counts session drops, so a session read from the database
	// while a drop runs is not cached after it.
	revokeGen uint64
	// restoreLimit bounds the bytes one restore unpacks.
	restoreLimit int64
	lastSweep    time.Time // of expired sessions (forgetExpired)
}

func (n *Node) initAccounts(ctx context.Context) error {
	n.web.hashSlots = make(chan struct{}, hashSlots)
	n.web.restoreLimit = defaultRestoreLimit
	// Until the owner chooses a username, they are who `erg run --owner`
	// (or $USER) says.
	if _, err := n.db.ExecContext(ctx, `UPDATE users SET username = ? WHERE id = ? AND username = ''`, strings.ToLower(n.cfg.Owner), ownerID); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	need, err := n.SetupNeeded(ctx)
	if err != nil {
		return err
	}
	if need {
		n.web.setupToken = randomToken()
	}
	return nil
}

// SetupURL is the one-time link that lets the owner choose a password, or
// "" when that is done.
func (n *Node) SetupURL() string {
	n.mu.RLock()
	token := n.web.setupToken
	n.mu.RUnlock()
	if token == "" {
		return ""
	}
	return n.URL() + "/setup?token=" + token
}

func (n *Node) hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := n.argon(ctx, password, salt)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func (n *Node) argon(ctx context.Context, password string, salt []byte) ([]byte, error) {
	select {
	case n.web.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-n.web.hashSlots }()
	return argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen), nil
}

// checkPassword compares in constant time. An empty or malformed stored
// hash matches nothing, but still costs a hash, so a missing account takes
// as long to refuse as a wrong password.
func (n *Node) checkPassword(ctx context.Context, stored, password string) bool {
	var v, m, t, p int
	var saltB64, keyB64 string
	parts := strings.Split(stored, "$")
	ok := len(parts) == 6 && parts[1] == "argon2id"
	if ok {
		_, e1 := fmt.Sscanf(parts[2], "v=%d", &v)
		_, e2 := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p)
		saltB64, keyB64 = parts[4], parts[5]
		ok = e1 == nil && e2 == nil && m == argonMemory && t == argonTime && p == argonThreads
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(saltB64)
	want, err2 := base64.RawStdEncoding.DecodeString(keyB64)
	if !ok || err1 != nil || err2 != nil || len(salt) == 0 {
		salt, want, ok = []byte("erg-no-such-user"), nil, false
	}
	got, err := n.argon(ctx, password, salt)
	if err != nil {
		return false
	}
	return ok && subtle.ConstantTimeCompare(got, want) == 1
}

func checkNewPassword(password string) error {
	switch {
	case len(password) < 8:
		return fmt.Errorf("%w: the password must have at least 8 characters", erg.ErrInvalid)
	case len(password) > 256:
		return fmt.Errorf("%w: the password must have at most 256 characters", erg.ErrInvalid)
	}
	return nil
}

func checkUsername(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if !usernameRe.MatchString(name) {
		return "", fmt.Errorf("%w: a username is 1-32 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", erg.ErrInvalid)
	}
	return name, nil
}

// SetupNeeded implements webui.Backend.
func (n *Node) SetupNeeded(ctx context.Context) (bool, error) {
	var hash string
	err := n.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, ownerID).Scan(&hash)
	if err != nil {
		return false, fmt.Errorf("accounts: %w", err)
	}
	return hash == "", nil
}

// Setup implements webui.Backend.
func (n *Node) Setup(ctx context.Context, token, username, password string) (erg.User, string, error) {
	n.mu.RLock()
	want := n.web.setupToken
	n.mu.RUnlock()
	if want == "" {
		return erg.User{}, "", fmt.Errorf("%w: this node is already set up; sign in instead", erg.ErrForbidden)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return erg.User{}, "", fmt.Errorf("%w: the setup link is wrong: open the one `erg run` printed", erg.ErrForbidden)
	}
	username, err := checkUsername(username)
	if err != nil {
		return erg.User{}, "", err
	}
	if err := checkNewPassword(password); err != nil {
		return erg.User{}, "", err
	}
	hash, err := n.hashPassword(ctx, password)
	if err != nil {
		return erg.User{}, "", err
	}
	res, err := n.db.ExecContext(ctx, `UPDATE users SET username = ?, password_hash = ? WHERE id = ? AND password_hash = ''`, username, hash, ownerID)
	if err != nil {
		return erg.User{}, "", fmt.Errorf("setup: %w", err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return erg.User{}, "", fmt.Errorf("%w: this node is already set up; sign in instead", erg.ErrForbidden)
	}
	n.mu.Lock()
	n.web.setupToken = ""
	n.mu.Unlock()
	// Grain sessions cache the owner's name.
	n.dropSessions(func(s sessionEntry) bool { return s.accountID == ownerID })
	n.log.Info("owner account set up", "username", username)
	u, err := n.userByID(ctx, ownerID)
	if err != nil {
		return erg.User{}, "", err
	}
	s, err := n.newWebSession(ctx, u.ID)
	return u, s, err
}

func (n *Node) userByID(ctx context.Context, id string) (erg.User, error) {
	var u erg.User
	var owner bool
	var created int64
	err := n.db.QueryRowContext(ctx, `SELECT id, username, is_owner, created_at FROM users WHERE id = ?`, id).Scan(&u.ID, &u.Username, &owner, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: no such user", erg.ErrNotFound)
	}
	u.Owner, u.Created = owner, time.Unix(created, 0)
	return u, err
}

func (n *Node) userByName(ctx context.Context, name string) (erg.User, error) {
	var id string
	err := n.db.QueryRowContext(ctx, `SELECT id FROM users WHERE username = ?`, strings.ToLower(strings.TrimSpace(name))).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, fmt.Errorf("%w: no user %q on this node", erg.ErrNotFound, name)
	}
	if err != nil {
		return erg.User{}, err
	}
	return n.userByID(ctx, id)
}

// Login implements webui.Backend.
func (n *Node) Login(ctx context.Context, username, password string) (erg.User, string, error) {
	var id, hash string
	err := n.db.QueryRowContext(ctx, `SELECT id, password_hash FROM users WHERE username = ?`,
		strings.ToLower(strings.TrimSpace(username))).Scan(&id, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, "", err
	}
	if !n.checkPassword(ctx, hash, password) {
		return erg.User{}, "", fmt.Errorf("%w: wrong username or password", erg.ErrUnauthorized)
	}
	u, err := n.userByID(ctx, id)
	if err != nil {
		return erg.User{}, "", err
	}
	s, err := n.newWebSession(ctx, u.ID)
	return u, s, err
}

func (n *Node) newWebSession(ctx context.Context, userID string) (string, error) {
	s := randomToken()
	now := time.Now()
	_, err := n.db.ExecContext(ctx, `INSERT INTO web_sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		hashToken(s), userID, randomToken(), now.Unix(), now.Add(webSessionTTL).Unix())
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	n.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires_at <= ?`, now.Unix())
	return s, nil
}

// ChangePassword implements webui.Backend.
func (n *Node) ChangePassword(ctx context.Context, who erg.User, current, password string) (string, error) {
	var hash string
	if err := n.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, who.ID).Scan(&hash); err != nil {
		return "", fmt.Errorf("change password: %w", err)
	}
	if !n.checkPassword(ctx, hash, current) {
		return "", fmt.Errorf("%w: the current password is wrong", erg.ErrForbidden)
	}
	if err := checkNewPassword(password); err != nil {
		return "", err
	}
	newHash, err := n.hashPassword(ctx, password)
	if err != nil {
		return "", err
	}
	tx, err := n.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, newHash, who.ID); err != nil {
		return "", err
	}
	// Whoever knew the old password may hold a session: end them all.
	if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE user_id = ?`, who.ID); err != nil {
		return "", err
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	n.log.Info("password changed", "username", who.Username)
	return n.newWebSession(ctx, who.ID)
}

// Logout implements webui.Backend.
func (n *Node) Logout(ctx context.Context, session string) error {
	_, err := n.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE hash = ?`, hashToken(session))
	return err
}

// WebSession implements webui.Backend.
func (n *Node) WebSession(ctx context.Context, session string) (erg.User, string, error) {
	var userID, csrf string
	err := n.db.QueryRowContext(ctx, `SELECT user_id, csrf FROM web_sessions WHERE hash = ? AND expires_at > ?`,
		hashToken(session), time.Now().Unix()).Scan(&userID, &csrf)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, "", fmt.Errorf("%w: session ended", erg.ErrUnauthorized)
	}
	if err != nil {
		return erg.User{}, "", err
	}
	u, err := n.userByID(ctx, userID)
	return u, csrf, err
}

// Owner implements webui.Backend.
func (n *Node) Owner(ctx context.Context) (erg.User, error) { return n.userByID(ctx, ownerID) }

func requireOwner(who erg.User) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can do that", erg.ErrForbidden)
	}
	return nil
}

// TokenUser implements webui.Backend.
func (n *Node) TokenUser(ctx context.Context, token string) (erg.User, error) {
	var userID string
	err := n.db.QueryRowContext(ctx, `SELECT user_id FROM api_tokens WHERE hash = ?`, hashToken(token)).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, fmt.Errorf("%w: unknown API token", erg.ErrUnauthorized)
	}
	if err != nil {
		return erg.User{}, err
	}
	return n.userByID(ctx, userID)
}

// NewAPIToken implements webui.Backend.
func (n *Node) NewAPIToken(ctx context.Context, who erg.User, label string) (erg.APIToken, error) {
	label = strings.TrimSpace(label)
	if len(label) > 100 {
		return erg.APIToken{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	t := erg.APIToken{ID: newShortID(), Label: label, Created: time.Unix(time.Now().Unix(), 0), Token: "erg_" + randomToken()}
	_, err := n.db.ExecContext(ctx, `INSERT INTO api_tokens (id, hash, user_id, label, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, hashToken(t.Token), who.ID, t.Label, t.Created.Unix())
	if err != nil {
		return erg.APIToken{}, fmt.Errorf("new API token: %w", err)
	}
	return t, nil
}

// APITokens implements webui.Backend.
func (n *Node) APITokens(ctx context.Context, who erg.User) ([]erg.APIToken, error) {
	rows, err := n.db.QueryContext(ctx, `SELECT id, label, created_at FROM api_tokens WHERE user_id = ? ORDER BY created_at, id`, who.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.APIToken{}
	for rows.Next() {
		var t erg.APIToken
		var created int64
		if err := rows.Scan(&t.ID, &t.Label, &created); err != nil {
			return nil, err
		}
		t.Created = time.Unix(created, 0)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RemoveAPIToken implements webui.Backend.
func (n *Node) RemoveAPIToken(ctx context.Context, who erg.User, id string) error {
	res, err := n.db.ExecContext(ctx, `DELETE FROM api_tokens WHERE id = ? AND user_id = ?`, id, who.ID)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("%w: no API token %q", erg.ErrNotFound, id)
	}
	return nil
}

// Users implements webui.Backend.
func (n *Node) Users(ctx context.Context, who erg.User) ([]erg.User, error) {
	if err := requireOwner(who); err != nil {
		return nil, err
	}
	rows, err := n.db.QueryContext(ctx, `SELECT id, username, is_owner, created_at FROM users ORDER BY is_owner DESC, username`)
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

// Invites implements webui.Backend.
func (n *Node) Invites(ctx context.Context, who erg.User) ([]erg.Invite, error) {
	if err := requireOwner(who); err != nil {
		return nil, err
	}
	rows, err := n.db.QueryContext(ctx, `SELECT id, username, created_at, expires_at FROM invites WHERE expires_at > ? ORDER BY created_at, id`, time.Now().Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.Invite{}
	for rows.Next() {
		var inv erg.Invite
		var created, expires int64
		if err := rows.Scan(&inv.ID, &inv.Username, &created, &expires); err != nil {
			return nil, err
		}
		inv.Created, inv.Expires = time.Unix(created, 0), time.Unix(expires, 0)
		out = append(out, inv)
	}
	return out, rows.Err()
}

// InviteUser implements webui.Backend.
func (n *Node) InviteUser(ctx context.Context, who erg.User, username string) (erg.Invite, error) {
	if err := requireOwner(who); err != nil {
		return erg.Invite{}, err
	}
	username, err := checkUsername(username)
	if err != nil {
		return erg.Invite{}, err
	}
	now := time.Now()
	n.db.ExecContext(ctx, `DELETE FROM invites WHERE expires_at <= ?`, now.Unix())
	var taken int
	n.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM users WHERE username = ?) + (SELECT count(*) FROM invites WHERE username = ?)`,
		username, username).Scan(&taken)
	if taken > 0 {
		return erg.Invite{}, fmt.Errorf("%w: the username %q is taken or already invited", erg.ErrInvalid, username)
	}
	token := randomToken()
	inv := erg.Invite{ID: newShortID(), Username: username, Created: time.Unix(now.Unix(), 0), Expires: time.Unix(now.Add(inviteTTL).Unix(), 0)}
	_, err = n.db.ExecContext(ctx, `INSERT INTO invites (id, hash, username, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		inv.ID, hashToken(token), username, inv.Created.Unix(), inv.Expires.Unix())
	if err != nil {
		return erg.Invite{}, fmt.Errorf("invite: %w", err)
	}
	inv.URL = n.URL() + "/invite/" + token
	n.log.Info("user invited", "username", username)
	return inv, nil
}

// CancelInvite implements webui.Backend.
func (n *Node) CancelInvite(ctx context.Context, who erg.User, id string) error {
	if err := requireOwner(who); err != nil {
		return err
	}
	res, err := n.db.ExecContext(ctx, `DELETE FROM invites WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("%w: no invite %q", erg.ErrNotFound, id)
	}
	return nil
}

// InviteInfo implements webui.Backend.
func (n *Node) InviteInfo(ctx context.Context, token string) (erg.Invite, error) {
	var inv erg.Invite
	var created, expires int64
	err := n.db.QueryRowContext(ctx, `SELECT id, username, created_at, expires_at FROM invites WHERE hash = ? AND expires_at > ?`,
		hashToken(token), time.Now().Unix()).Scan(&inv.ID, &inv.Username, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return inv, fmt.Errorf("%w: this invite link was already used, was cancelled or has expired; ask for a new one", erg.ErrNotFound)
	}
	inv.Created, inv.Expires = time.Unix(created, 0), time.Unix(expires, 0)
	return inv, err
}

// AcceptInvite implements webui.Backend.
func (n *Node) AcceptInvite(ctx context.Context, token, password string) (erg.User, string, error) {
	inv, err := n.InviteInfo(ctx, token)
	if err != nil {
		return erg.User{}, "", err
	}
	if err := checkNewPassword(password); err != nil {
		return erg.User{}, "", err
	}
	hash, err := n.hashPassword(ctx, password)
	if err != nil {
		return erg.User{}, "", err
	}
	tx, err := n.db.BeginTx(ctx, nil)
	if err != nil {
		return erg.User{}, "", err
	}
	defer tx.Rollback()
	// Deleting is the spending: of two racing acceptances one deletes it.
	res, err := tx.ExecContext(ctx, `DELETE FROM invites WHERE hash = ? AND expires_at > ?`, hashToken(token), time.Now().Unix())
	if err != nil {
		return erg.User{}, "", err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return erg.User{}, "", fmt.Errorf("%w: this invite link was already used", erg.ErrNotFound)
	}
	id := newShortID()
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, username, password_hash, is_owner, created_at) VALUES (?, ?, ?, 0, ?)`,
		id, inv.Username, hash, time.Now().Unix()); err != nil {
		return erg.User{}, "", fmt.Errorf("create user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return erg.User{}, "", err
	}
	n.log.Info("user joined", "username", inv.Username)
	u, err := n.userByID(ctx, id)
	if err != nil {
		return erg.User{}, "", err
	}
	s, err := n.newWebSession(ctx, id)
	return u, s, err
}

// RemoveUser implements webui.Backend.
func (n *Node) RemoveUser(ctx context.Context, who erg.User, username string) error {
	if err := requireOwner(who); err != nil {
		return err
	}
	u, err := n.userByName(ctx, username)
	if err != nil {
		return err
	}
	if u.Owner {
		return fmt.Errorf("%w: the owner cannot be removed", erg.ErrInvalid)
	}
	var theirs []string
	n.mu.RLock()
	for id, g := range n.cache {
		if g.ownerID == u.ID {
			theirs = append(theirs, id)
		}
	}
	n.mu.RUnlock()
	for _, id := range theirs {
		if err := n.removeGrain(ctx, id); err != nil {
			return fmt.Errorf("remove %s's grains: %w", u.Username, err)
		}
	}
	if _, err := n.db.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, u.ID); err != nil {
		return fmt.Errorf("remove user: %w", err)
	}
	n.dropSessions(func(s sessionEntry) bool { return s.accountID == u.ID })
	n.forgetRemoteOf(u.ID)
	n.log.Info("user removed", "username", u.Username, "grains", len(theirs))
	return nil
}

var shortIDEncoding = base64.RawURLEncoding

// newShortID is a random id for rows people name in commands (shares,
// invites, tokens); it is not a secret.
func newShortID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return strings.NewReplacer("-", "x", "_", "y").Replace(shortIDEncoding.EncodeToString(b))
}
