package accounts

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"erg/db"
)

func newService(t *testing.T, slots int) *Service {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s, err := New(ctx, Config{DB: d, Owner: "alice", HashSlots: slots})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMalformedHashesMatchNothing(t *testing.T) {
	ctx := context.Background()
	s := newService(t, 1)
	good, err := s.hashPassword(ctx, "a password")
	if err != nil {
		t.Fatal(err)
	}
	if !s.checkPassword(ctx, good, "a password") {
		t.Fatal("the right password does not match")
	}
	if s.checkPassword(ctx, good, "a passwore") {
		t.Error("a wrong password matches")
	}
	for _, stored := range []string{
		"",
		"a password",
		"$argon2id$v=19$m=19456,t=2,p=1$$",
		"$argon2id$v=19$m=1024,t=2,p=1" + good[len("$argon2id$v=19$m=19456,t=2,p=1"):], // weaker parameters
		"$argon2i" + good[len("$argon2id"):],
		good + "$",
	} {
		if s.checkPassword(ctx, stored, "a password") {
			t.Errorf("stored hash %q matches", stored)
		}
	}
}

// TestHashesWaitForASlot: with every slot taken, a login waits, and gives
// up as refused when its context ends.
func TestHashesWaitForASlot(t *testing.T) {
	s := newService(t, 1)
	s.slots <- struct{}{}
	// start before the deadline's clock, or a login that waits for all of
	// it can look a hair too quick.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := s.Login(ctx, "alice", "whatever"); err == nil {
		t.Error("a login with no slot free succeeded")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("the login did not wait for a slot")
	}
	<-s.slots
	if _, err := s.hashPassword(context.Background(), "a password"); err != nil {
		t.Errorf("with the slot free again: %v", err)
	}
}
