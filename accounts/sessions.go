package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"erg"
)

// Login checks username and password and, if they match, signs the user
// in: the web session is returned. A wrong password and an unknown user
// are the same erg.ErrUnauthorized, and take as long.
func (s *Service) Login(ctx context.Context, username, password string) (erg.User, string, error) {
	var id, hash string
	err := s.db.QueryRowContext(ctx, `SELECT id, password_hash FROM users WHERE username = ?`,
		strings.ToLower(strings.TrimSpace(username))).Scan(&id, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, "", err
	}
	if !s.checkPassword(ctx, hash, password) {
		return erg.User{}, "", fmt.Errorf("%w: wrong username or password", erg.ErrUnauthorized)
	}
	u, err := s.User(ctx, id)
	if err != nil {
		return erg.User{}, "", err
	}
	session, err := s.newWebSession(ctx, u.ID)
	return u, session, err
}

// newWebSession signs userID in, with a CSRF token of its own, and
// forgets sessions that expired.
func (s *Service) newWebSession(ctx context.Context, userID string) (string, error) {
	session := randomToken()
	now := s.now()
	_, err := s.db.ExecContext(ctx, `INSERT INTO web_sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		hashToken(session), userID, randomToken(), now.Unix(), now.Add(SessionTTL).Unix())
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires_at <= ?`, now.Unix())
	return session, nil
}

// ChangePassword sets who's password, if current is their password now.
// Every web session of theirs ends; the new one returned replaces the
// caller's.
func (s *Service) ChangePassword(ctx context.Context, who erg.User, current, password string) (string, error) {
	var hash string
	if err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, who.ID).Scan(&hash); err != nil {
		return "", fmt.Errorf("change password: %w", err)
	}
	if !s.checkPassword(ctx, hash, current) {
		return "", fmt.Errorf("%w: the current password is wrong", erg.ErrForbidden)
	}
	if err := checkNewPassword(password); err != nil {
		return "", err
	}
	newHash, err := s.hashPassword(ctx, password)
	if err != nil {
		return "", err
	}
	tx, err := s.db.BeginTx(ctx, nil)
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
	s.log.Info("password changed", "username", who.Username)
	return s.newWebSession(ctx, who.ID)
}

// Logout ends the web session session.
func (s *Service) Logout(ctx context.Context, session string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE hash = ?`, hashToken(session))
	return err
}

// WebSession is who holds the live web session session, and its CSRF
// token; erg.ErrUnauthorized when it has ended.
func (s *Service) WebSession(ctx context.Context, session string) (erg.User, string, error) {
	var userID, csrf string
	err := s.db.QueryRowContext(ctx, `SELECT user_id, csrf FROM web_sessions WHERE hash = ? AND expires_at > ?`,
		hashToken(session), s.now().Unix()).Scan(&userID, &csrf)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, "", fmt.Errorf("%w: session ended", erg.ErrUnauthorized)
	}
	if err != nil {
		return erg.User{}, "", err
	}
	u, err := s.User(ctx, userID)
	return u, csrf, err
}
