package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"erg"
)

// TokenUser is who the API token token acts for.
func (s *Service) TokenUser(ctx context.Context, token string) (erg.User, error) {
	var userID string
	err := s.db.QueryRowContext(ctx, `SELECT user_id FROM api_tokens WHERE hash = ?`, hashToken(token)).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.User{}, fmt.Errorf("%w: unknown API token", erg.ErrUnauthorized)
	}
	if err != nil {
		return erg.User{}, err
	}
	return s.User(ctx, userID)
}

// NewAPIToken makes an API token for who. Its Token is the secret, which
// only this answer holds: the node keeps a hash.
func (s *Service) NewAPIToken(ctx context.Context, who erg.User, label string) (erg.APIToken, error) {
	label = strings.TrimSpace(label)
	if len(label) > 100 {
		return erg.APIToken{}, fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	t := erg.APIToken{ID: newShortID(), Label: label, Created: time.Unix(s.now().Unix(), 0), Token: "erg_" + randomToken()}
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, hash, user_id, label, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, hashToken(t.Token), who.ID, t.Label, t.Created.Unix())
	if err != nil {
		return erg.APIToken{}, fmt.Errorf("new API token: %w", err)
	}
	return t, nil
}

// APITokens lists who's API tokens, without their secrets.
func (s *Service) APITokens(ctx context.Context, who erg.User) ([]erg.APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, label, created_at FROM api_tokens WHERE user_id = ? ORDER BY created_at, id`, who.ID)
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

// RemoveAPIToken revokes who's API token id.
func (s *Service) RemoveAPIToken(ctx context.Context, who erg.User, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM api_tokens WHERE id = ? AND user_id = ?`, id, who.ID)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("%w: no API token %q", erg.ErrNotFound, id)
	}
	return nil
}
