package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"erg"
)

// Argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes, one
// lane), which costs tens of milliseconds here. At most Config.HashSlots
// hashes run at once, so a burst of logins cannot take more than that much
// memory.
const (
	argonTime        = 2
	argonMemory      = 19 * 1024
	argonThreads     = 1
	argonKeyLen      = 32
	defaultHashSlots = 2
)

func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := s.argon(ctx, password, salt)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func (s *Service) argon(ctx context.Context, password string, salt []byte) ([]byte, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	return argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen), nil
}

// checkPassword compares in constant time. An empty or malformed stored
// hash matches nothing, but still costs a hash, so a missing account takes
// as long to refuse as a wrong password.
func (s *Service) checkPassword(ctx context.Context, stored, password string) bool {
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
	got, err := s.argon(ctx, password, salt)
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
