package accounts

import (
	"context"
	"fmt"

	"erg"
)

// VerifyPassword checks who's password again, for what a session alone
// must not do (making a recovery code).
func (s *Service) VerifyPassword(ctx context.Context, who erg.User, password string) error {
	var hash string
	if err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, who.ID).Scan(&hash); err != nil {
		return fmt.Errorf("check password: %w", err)
	}
	if !s.checkPassword(ctx, hash, password) {
		return fmt.Errorf("%w: the password is wrong", erg.ErrForbidden)
	}
	return nil
}
