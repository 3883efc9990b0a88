package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"erg"
)

// Invites lists the invites not yet used, cancelled or expired; only the
// owner may.
func (s *Service) Invites(ctx context.Context, who erg.User) ([]erg.Invite, error) {
	if err := RequireOwner(who); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, username, created_at, expires_at FROM invites WHERE expires_at > ? ORDER BY created_at, id`, s.now().Unix())
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

// InviteUser invites a new user called username; only the owner may. The
// invite's URL, with its one-time secret, is only in this answer.
func (s *Service) InviteUser(ctx context.Context, who erg.User, username string) (erg.Invite, error) {
	if err := RequireOwner(who); err != nil {
		return erg.Invite{}, err
	}
	username, err := CheckUsername(username)
	if err != nil {
		return erg.Invite{}, err
	}
	now := s.now()
	s.db.ExecContext(ctx, `DELETE FROM invites WHERE expires_at <= ?`, now.Unix())
	var taken int
	s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM users WHERE username = ?) + (SELECT count(*) FROM invites WHERE username = ?)`,
		username, username).Scan(&taken)
	if taken > 0 {
		return erg.Invite{}, fmt.Errorf("%w: the username %q is taken or already invited", erg.ErrInvalid, username)
	}
	token := randomToken()
	inv := erg.Invite{ID: newShortID(), Username: username, Created: time.Unix(now.Unix(), 0), Expires: time.Unix(now.Add(InviteTTL).Unix(), 0)}
	_, err = s.db.ExecContext(ctx, `INSERT INTO invites (id, hash, username, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		inv.ID, hashToken(token), username, inv.Created.Unix(), inv.Expires.Unix())
	if err != nil {
		return erg.Invite{}, fmt.Errorf("invite: %w", err)
	}
	inv.URL = s.url() + "/invite/" + token
	s.log.Info("user invited", "username", username)
	return inv, nil
}

// CancelInvite withdraws the invite id; only the owner may.
func (s *Service) CancelInvite(ctx context.Context, who erg.User, id string) error {
	if err := RequireOwner(who); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM invites WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("%w: no invite %q", erg.ErrNotFound, id)
	}
	return nil
}

// InviteInfo is the live invite whose secret is token.
func (s *Service) InviteInfo(ctx context.Context, token string) (erg.Invite, error) {
	var inv erg.Invite
	var created, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT id, username, created_at, expires_at FROM invites WHERE hash = ? AND expires_at > ?`,
		hashToken(token), s.now().Unix()).Scan(&inv.ID, &inv.Username, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return inv, fmt.Errorf("%w: this invite link was already used, was cancelled or has expired; ask for a new one", erg.ErrNotFound)
	}
	inv.Created, inv.Expires = time.Unix(created, 0), time.Unix(expires, 0)
	return inv, err
}

// AcceptInvite spends the invite whose secret is token: its user is made
// with password, and signed in (the web session is returned).
func (s *Service) AcceptInvite(ctx context.Context, token, password string) (erg.User, string, error) {
	inv, err := s.InviteInfo(ctx, token)
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
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return erg.User{}, "", err
	}
	defer tx.Rollback()
	// Deleting is the spending: of two racing acceptances one deletes it.
	res, err := tx.ExecContext(ctx, `DELETE FROM invites WHERE hash = ? AND expires_at > ?`, hashToken(token), s.now().Unix())
	if err != nil {
		return erg.User{}, "", err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return erg.User{}, "", fmt.Errorf("%w: this invite link was already used", erg.ErrNotFound)
	}
	id := newShortID()
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, username, password_hash, is_owner, created_at) VALUES (?, ?, ?, 0, ?)`,
		id, inv.Username, hash, s.now().Unix()); err != nil {
		return erg.User{}, "", fmt.Errorf("create user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return erg.User{}, "", err
	}
	s.log.Info("user joined", "username", inv.Username)
	u, err := s.User(ctx, id)
	if err != nil {
		return erg.User{}, "", err
	}
	session, err := s.newWebSession(ctx, id)
	return u, session, err
}
