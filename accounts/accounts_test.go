package accounts_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"erg"
	"erg/accounts"
	"erg/db"
)

const (
	ownerPassword = "correct horse"
	bobPassword   = "battery staple"
)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	*accounts.Service
	cfg     accounts.Config
	clock   *clock
	mu      sync.Mutex
	renamed []string
}

// newAccounts is a Service on a fresh database with the whole schema,
// whose owner is "Alice" until set up.
func newAccounts(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	f := &fixture{clock: &clock{t: time.Unix(1_700_000_000, 0)}}
	f.cfg = accounts.Config{
		DB:    d,
		Owner: "Alice",
		URL:   func() string { return "http://node.test:6080" },
		Now:   f.clock.now,
		Renamed: func(id string) {
			f.mu.Lock()
			f.renamed = append(f.renamed, id)
			f.mu.Unlock()
		},
	}
	f.Service, err = accounts.New(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func setupToken(t *testing.T, f *fixture) string {
	t.Helper()
	u := f.SetupURL()
	token, ok := strings.CutPrefix(u, "http://node.test:6080/setup?token=")
	if !ok || token == "" {
		t.Fatalf("setup URL %q", u)
	}
	return token
}

// setUp sets the owner up as alice and invites and signs up bob.
func setUp(t *testing.T, f *fixture) (owner, bob erg.User) {
	t.Helper()
	ctx := context.Background()
	owner, _, err := f.Setup(ctx, setupToken(t, f), "alice", ownerPassword)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := f.InviteUser(ctx, owner, "bob")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err = f.AcceptInvite(ctx, inviteToken(t, inv), bobPassword)
	if err != nil {
		t.Fatal(err)
	}
	return owner, bob
}

func inviteToken(t *testing.T, inv erg.Invite) string {
	t.Helper()
	token, ok := strings.CutPrefix(inv.URL, "http://node.test:6080/invite/")
	if !ok || token == "" {
		t.Fatalf("invite URL %q", inv.URL)
	}
	return token
}

func wantKind(t *testing.T, what string, err error, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: %v, want kind %v", what, err, erg.KindOf(sentinel))
	}
}

func TestSetupTokenWorksOnce(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	if need, err := f.SetupNeeded(ctx); err != nil || !need {
		t.Fatalf("SetupNeeded before setup: %v, %v", need, err)
	}
	if o, err := f.Owner(ctx); err != nil || o.Username != "alice" || !o.Owner || o.ID != accounts.OwnerID {
		t.Errorf("the owner before setup: %+v, %v", o, err)
	}
	token := setupToken(t, f)

	_, _, err := f.Setup(ctx, "wrong", "alice", ownerPassword)
	wantKind(t, "a wrong setup token", err, erg.ErrForbidden)
	_, _, err = f.Setup(ctx, token, "Not A Name!", ownerPassword)
	wantKind(t, "a bad username", err, erg.ErrInvalid)
	_, _, err = f.Setup(ctx, token, "alice", "short")
	wantKind(t, "a short password", err, erg.ErrInvalid)
	if len(f.renamed) != 0 {
		t.Errorf("failed setups renamed %v", f.renamed)
	}

	u, session, err := f.Setup(ctx, token, " Boss ", ownerPassword)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != accounts.OwnerID || u.Username != "boss" || !u.Owner {
		t.Errorf("set up as %+v", u)
	}
	if got, csrf, err := f.WebSession(ctx, session); err != nil || got.ID != u.ID || csrf == "" {
		t.Errorf("the setup's session: %+v %q %v", got, csrf, err)
	}
	if f.SetupURL() != "" {
		t.Errorf("setup URL after setup: %q", f.SetupURL())
	}
	if len(f.renamed) != 1 || f.renamed[0] != accounts.OwnerID {
		t.Errorf("Renamed calls: %v", f.renamed)
	}
	_, _, err = f.Setup(ctx, token, "boss", ownerPassword)
	wantKind(t, "setting up again", err, erg.ErrForbidden)

	// A restart makes no new setup token, and keeps the chosen name.
	again, err := accounts.New(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.SetupURL() != "" {
		t.Errorf("setup URL after a restart: %q", again.SetupURL())
	}
	if need, _ := again.SetupNeeded(ctx); need {
		t.Error("setup needed after a restart")
	}
	if o, _ := again.Owner(ctx); o.Username != "boss" {
		t.Errorf("the owner after a restart: %q", o.Username)
	}
}

func TestSetupTokenIsNewEachStartUntilSpent(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	first := setupToken(t, f)
	again, err := accounts.New(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := again.SetupURL()
	if second == "" || strings.HasSuffix(second, first) {
		t.Errorf("setup URL after a restart: %q (before: token %q)", second, first)
	}
	// The old service's token is no longer the one that works.
	_, _, err = again.Setup(ctx, first, "alice", ownerPassword)
	wantKind(t, "the old token", err, erg.ErrForbidden)
}

func TestLoginAndLogout(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	_, bob := setUp(t, f)

	for _, c := range []struct{ user, password string }{
		{"bob", "wrong password"},
		{"bob", ""},
		{"nobody", bobPassword},
		{"", ""},
		{"alice", bobPassword},
	} {
		_, s, err := f.Login(ctx, c.user, c.password)
		wantKind(t, "login "+c.user+"/"+c.password, err, erg.ErrUnauthorized)
		if s != "" {
			t.Errorf("login %s/%s gave a session", c.user, c.password)
		}
	}

	u, s1, err := f.Login(ctx, " BOB ", bobPassword)
	if err != nil || u.ID != bob.ID || u.Owner {
		t.Fatalf("login: %+v, %v", u, err)
	}
	_, s2, err := f.Login(ctx, "bob", bobPassword)
	if err != nil {
		t.Fatal(err)
	}
	_, csrf1, err1 := f.WebSession(ctx, s1)
	_, csrf2, err2 := f.WebSession(ctx, s2)
	if err1 != nil || err2 != nil || csrf1 == "" || csrf1 == csrf2 || s1 == s2 {
		t.Errorf("two sessions: %v %v, CSRF %q and %q", err1, err2, csrf1, csrf2)
	}
	if err := f.Logout(ctx, s1); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.WebSession(ctx, s1)
	wantKind(t, "a session after logout", err, erg.ErrUnauthorized)
	if _, _, err := f.WebSession(ctx, s2); err != nil {
		t.Errorf("logging out ended the other session: %v", err)
	}
	_, _, err = f.WebSession(ctx, "made-up")
	wantKind(t, "a made-up session", err, erg.ErrUnauthorized)
}

func TestWebSessionsExpire(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	setUp(t, f)
	_, s, err := f.Login(ctx, "bob", bobPassword)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(accounts.SessionTTL - time.Minute)
	if _, _, err := f.WebSession(ctx, s); err != nil {
		t.Errorf("a session a minute before it expires: %v", err)
	}
	f.clock.add(time.Minute)
	_, _, err = f.WebSession(ctx, s)
	wantKind(t, "an expired session", err, erg.ErrUnauthorized)
}

func TestChangePasswordEndsOtherSessions(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	_, bob := setUp(t, f)
	_, s1, _ := f.Login(ctx, "bob", bobPassword)
	_, s2, _ := f.Login(ctx, "bob", bobPassword)
	_, alice, _ := f.Login(ctx, "alice", ownerPassword)

	_, err := f.ChangePassword(ctx, bob, "not it", "a new password")
	wantKind(t, "a wrong current password", err, erg.ErrForbidden)
	_, err = f.ChangePassword(ctx, bob, bobPassword, "short")
	wantKind(t, "a short new password", err, erg.ErrInvalid)
	_, err = f.ChangePassword(ctx, bob, bobPassword, strings.Repeat("x", 257))
	wantKind(t, "a long new password", err, erg.ErrInvalid)
	for _, s := range []string{s1, s2} {
		if _, _, err := f.WebSession(ctx, s); err != nil {
			t.Errorf("a refused change ended a session: %v", err)
		}
	}

	s3, err := f.ChangePassword(ctx, bob, bobPassword, "a new password")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{s1, s2} {
		_, _, err := f.WebSession(ctx, s)
		wantKind(t, "a session from before the change", err, erg.ErrUnauthorized)
	}
	if u, _, err := f.WebSession(ctx, s3); err != nil || u.ID != bob.ID {
		t.Errorf("the session the change gave: %+v, %v", u, err)
	}
	if _, _, err := f.WebSession(ctx, alice); err != nil {
		t.Errorf("bob's change ended alice's session: %v", err)
	}
	_, _, err = f.Login(ctx, "bob", bobPassword)
	wantKind(t, "the old password", err, erg.ErrUnauthorized)
	if _, _, err := f.Login(ctx, "bob", "a new password"); err != nil {
		t.Errorf("the new password: %v", err)
	}
}

func TestPasswordsAreStoredAsArgon2id(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	_, bob := setUp(t, f)
	var h1, h2 string
	f.cfg.DB.QueryRow(`SELECT password_hash FROM users WHERE id = ?`, accounts.OwnerID).Scan(&h1)
	f.cfg.DB.QueryRow(`SELECT password_hash FROM users WHERE id = ?`, bob.ID).Scan(&h2)
	for _, h := range []string{h1, h2} {
		if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h, ownerPassword) || strings.Contains(h, bobPassword) {
			t.Errorf("stored password hash %q", h)
		}
	}
	// The same password twice gets different salts.
	if _, err := f.ChangePassword(ctx, bob, bobPassword, ownerPassword); err != nil {
		t.Fatal(err)
	}
	f.cfg.DB.QueryRow(`SELECT password_hash FROM users WHERE id = ?`, bob.ID).Scan(&h2)
	if h1 == h2 {
		t.Error("two accounts with one password have the same hash")
	}
}

func TestInviteIsAcceptedOnce(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, _, err := f.Setup(ctx, setupToken(t, f), "alice", ownerPassword)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := f.InviteUser(ctx, owner, " Carol ")
	if err != nil {
		t.Fatal(err)
	}
	if inv.Username != "carol" || inv.ID == "" || !inv.Expires.Equal(inv.Created.Add(accounts.InviteTTL)) {
		t.Errorf("invite %+v", inv)
	}
	token := inviteToken(t, inv)
	if got, err := f.InviteInfo(ctx, token); err != nil || got.ID != inv.ID || got.Username != "carol" || got.URL != "" {
		t.Errorf("InviteInfo: %+v, %v", got, err)
	}
	if list, err := f.Invites(ctx, owner); err != nil || len(list) != 1 || list[0].ID != inv.ID || list[0].URL != "" {
		t.Errorf("Invites: %+v, %v", list, err)
	}
	for _, name := range []string{"carol", "CAROL", "alice"} {
		_, err := f.InviteUser(ctx, owner, name)
		wantKind(t, "inviting "+name+" again", err, erg.ErrInvalid)
	}
	var stored string
	f.cfg.DB.QueryRow(`SELECT hash FROM invites WHERE id = ?`, inv.ID).Scan(&stored)
	if stored != sha256Hex(token) {
		t.Errorf("the invite is stored as %q, not its token's hash", stored)
	}

	_, _, err = f.AcceptInvite(ctx, token, "short")
	wantKind(t, "accepting with a short password", err, erg.ErrInvalid)
	carol, session, err := f.AcceptInvite(ctx, token, bobPassword)
	if err != nil {
		t.Fatal(err)
	}
	if carol.Username != "carol" || carol.Owner || carol.ID == accounts.OwnerID {
		t.Errorf("accepted as %+v", carol)
	}
	if u, _, err := f.WebSession(ctx, session); err != nil || u.ID != carol.ID {
		t.Errorf("the accepting session: %+v, %v", u, err)
	}
	_, _, err = f.AcceptInvite(ctx, token, bobPassword)
	wantKind(t, "accepting again", err, erg.ErrNotFound)
	_, err = f.InviteInfo(ctx, token)
	wantKind(t, "a spent invite's info", err, erg.ErrNotFound)
	if list, _ := f.Invites(ctx, owner); len(list) != 0 {
		t.Errorf("invites after accepting: %+v", list)
	}
	users, err := f.Users(ctx, owner)
	if err != nil || len(users) != 2 || users[0].ID != accounts.OwnerID || users[1].ID != carol.ID {
		t.Errorf("Users: %+v, %v", users, err)
	}
	if u, err := f.UserByName(ctx, "Carol"); err != nil || u.ID != carol.ID {
		t.Errorf("UserByName: %+v, %v", u, err)
	}
}

func TestConcurrentAcceptancesMakeOneUser(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, _, _ := f.Setup(ctx, setupToken(t, f), "alice", ownerPassword)
	inv, err := f.InviteUser(ctx, owner, "bob")
	if err != nil {
		t.Fatal(err)
	}
	token := inviteToken(t, inv)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = f.AcceptInvite(ctx, token, bobPassword) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, erg.ErrNotFound) {
			t.Errorf("a losing acceptance: %v", err)
		}
	}
	users, _ := f.Users(ctx, owner)
	if ok != 1 || len(users) != 2 {
		t.Errorf("%d acceptances succeeded, %d users", ok, len(users))
	}
}

func TestInvitesExpire(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, _, _ := f.Setup(ctx, setupToken(t, f), "alice", ownerPassword)
	inv, err := f.InviteUser(ctx, owner, "bob")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(accounts.InviteTTL)
	_, err = f.InviteInfo(ctx, inviteToken(t, inv))
	wantKind(t, "an expired invite's info", err, erg.ErrNotFound)
	_, _, err = f.AcceptInvite(ctx, inviteToken(t, inv), bobPassword)
	wantKind(t, "accepting an expired invite", err, erg.ErrNotFound)
	if list, _ := f.Invites(ctx, owner); len(list) != 0 {
		t.Errorf("expired invites listed: %+v", list)
	}
	// Its username is free again.
	again, err := f.InviteUser(ctx, owner, "bob")
	if err != nil {
		t.Fatalf("inviting bob after the invite expired: %v", err)
	}
	if _, _, err := f.AcceptInvite(ctx, inviteToken(t, again), bobPassword); err != nil {
		t.Errorf("the new invite: %v", err)
	}
}

func TestCancelledInviteIsRefused(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, bob := setUp(t, f)
	inv, err := f.InviteUser(ctx, owner, "carol")
	if err != nil {
		t.Fatal(err)
	}
	err = f.CancelInvite(ctx, bob, inv.ID)
	wantKind(t, "bob cancelling", err, erg.ErrForbidden)
	if err := f.CancelInvite(ctx, owner, inv.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.AcceptInvite(ctx, inviteToken(t, inv), bobPassword)
	wantKind(t, "accepting a cancelled invite", err, erg.ErrNotFound)
	err = f.CancelInvite(ctx, owner, inv.ID)
	wantKind(t, "cancelling again", err, erg.ErrNotFound)
}

func TestAPITokensAreShownOnceAndStoredHashed(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, bob := setUp(t, f)
	tok, err := f.NewAPIToken(ctx, bob, "  backup script ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "erg_") || tok.ID == "" || tok.Label != "backup script" {
		t.Errorf("new token %+v", tok)
	}
	var stored string
	var n int
	f.cfg.DB.QueryRow(`SELECT hash FROM api_tokens WHERE id = ?`, tok.ID).Scan(&stored)
	f.cfg.DB.QueryRow(`SELECT count(*) FROM api_tokens WHERE hash = ? OR label = ?`, tok.Token, tok.Token).Scan(&n)
	if stored != sha256Hex(tok.Token) || n != 0 {
		t.Errorf("the token is stored as %q (%d rows hold it in clear)", stored, n)
	}
	list, err := f.APITokens(ctx, bob)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].Token != "" || list[0].Label != "backup script" {
		t.Errorf("APITokens: %+v, %v", list, err)
	}
	if list, _ := f.APITokens(ctx, owner); len(list) != 0 {
		t.Errorf("the owner sees bob's tokens: %+v", list)
	}
	if u, err := f.TokenUser(ctx, tok.Token); err != nil || u.ID != bob.ID {
		t.Errorf("TokenUser: %+v, %v", u, err)
	}
	_, err = f.TokenUser(ctx, stored)
	wantKind(t, "the stored hash as a token", err, erg.ErrUnauthorized)
	_, err = f.NewAPIToken(ctx, bob, strings.Repeat("l", 101))
	wantKind(t, "a long label", err, erg.ErrInvalid)

	err = f.RemoveAPIToken(ctx, owner, tok.ID)
	wantKind(t, "the owner removing bob's token", err, erg.ErrNotFound)
	if err := f.RemoveAPIToken(ctx, bob, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.TokenUser(ctx, tok.Token)
	wantKind(t, "a removed token", err, erg.ErrUnauthorized)
	err = f.RemoveAPIToken(ctx, bob, tok.ID)
	wantKind(t, "removing it again", err, erg.ErrNotFound)
}

func TestOnlyTheOwnerManagesUsers(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t)
	owner, bob := setUp(t, f)
	_, err := f.Users(ctx, bob)
	wantKind(t, "Users", err, erg.ErrForbidden)
	_, err = f.Invites(ctx, bob)
	wantKind(t, "Invites", err, erg.ErrForbidden)
	_, err = f.InviteUser(ctx, bob, "carol")
	wantKind(t, "InviteUser", err, erg.ErrForbidden)
	_, err = f.Removable(ctx, bob, "alice")
	wantKind(t, "Removable by bob", err, erg.ErrForbidden)
	wantKind(t, "RequireOwner", accounts.RequireOwner(bob), erg.ErrForbidden)
	if err := accounts.RequireOwner(owner); err != nil {
		t.Errorf("RequireOwner(owner): %v", err)
	}

	_, err = f.Removable(ctx, owner, "alice")
	wantKind(t, "removing the owner", err, erg.ErrInvalid)
	wantKind(t, "deleting the owner", f.Delete(ctx, accounts.OwnerID), erg.ErrInvalid)
	_, err = f.Removable(ctx, owner, "nobody")
	wantKind(t, "removing nobody", err, erg.ErrNotFound)
	if u, err := f.Removable(ctx, owner, "Bob"); err != nil || u.ID != bob.ID {
		t.Fatalf("Removable(bob): %+v, %v", u, err)
	}

	_, session, _ := f.Login(ctx, "bob", bobPassword)
	tok, _ := f.NewAPIToken(ctx, bob, "")
	if err := f.Delete(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.WebSession(ctx, session)
	wantKind(t, "a removed user's session", err, erg.ErrUnauthorized)
	_, err = f.TokenUser(ctx, tok.Token)
	wantKind(t, "a removed user's token", err, erg.ErrUnauthorized)
	_, err = f.User(ctx, bob.ID)
	wantKind(t, "a removed user", err, erg.ErrNotFound)
	_, _, err = f.Login(ctx, "bob", bobPassword)
	wantKind(t, "a removed user's login", err, erg.ErrUnauthorized)
	if users, _ := f.Users(ctx, owner); len(users) != 1 {
		t.Errorf("users after removing bob: %+v", users)
	}
}

func TestCheckUsername(t *testing.T) {
	for in, want := range map[string]string{
		"bob": "bob", " Bob ": "bob", "a": "a", "0day": "0day", "a.b_c-d": "a.b_c-d",
		strings.Repeat("x", 32): strings.Repeat("x", 32),
	} {
		if got, err := accounts.CheckUsername(in); err != nil || got != want {
			t.Errorf("CheckUsername(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", ".bob", "-bob", "_bob", "bob smith", "bob/x", "böb", "bob@node", strings.Repeat("x", 33)} {
		_, err := accounts.CheckUsername(in)
		wantKind(t, "CheckUsername("+in+")", err, erg.ErrInvalid)
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
