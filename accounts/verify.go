package accounts

import (
	"context"
	"crypto/subtle"
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

// CheckSetupToken says whether token is the setup link's, which alone may
// set the node up (or restore it) before it has an owner.
func (s *Service) CheckSetupToken(token string) error {
	s.mu.Lock()
	want := s.setupToken
	s.mu.Unlock()
	if want == "" {
		return fmt.Errorf("%w: this node is already set up", erg.ErrForbidden)
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		return fmt.Errorf("%w: the setup link is wrong: open the one `erg run` printed", erg.ErrForbidden)
	}
	return nil
}
