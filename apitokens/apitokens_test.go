package apitokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/db"
	"erg/grains"
	"erg/grains/grainstest"
	"erg/internal/testkit"
	"erg/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testkit.Cleanup()
	os.Exit(code)
}

var (
	owner = erg.User{ID: "owner", Username: "olga", Owner: true}
	bob   = erg.User{ID: "bob", Username: "bob"}
)

type fixture struct {
	*Service
	grains *grains.Service
}

// newFixture is the tokens on a real database and grains service with the
// echo test app (apiPath "/") installed, the owner and one user.
func newFixture(t *testing.T, lim Limits) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	sqldb, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	if _, err := sqldb.Exec(`UPDATE users SET username = 'olga' WHERE id = 'owner';
		INSERT INTO users (id, username, created_at) VALUES ('bob', 'bob', 0)`); err != nil {
		t.Fatal(err)
	}
	env := grainstest.New(t, sqldb, dir, map[string]string{"owner": "olga", "bob": "bob"})
	env.InstallEcho(t)
	users := map[string]erg.User{"olga": owner, "bob": bob}
	return &fixture{grains: env.Grains, Service: New(Config{
		DB: sqldb, Grains: env.Grains, Derive: grainstest.Derive,
		UserByName: func(_ context.Context, name string) (erg.User, error) {
			if u, ok := users[name]; ok {
				return u, nil
			}
			return erg.User{}, erg.ErrNotFound
		},
		APIURL: func() string { return "http://api.node.test" },
		Limits: lim,
	})}
}

func (f *fixture) grain(t *testing.T) string {
	t.Helper()
	g, err := f.grains.NewGrain(context.Background(), owner, "echo", "")
	if err != nil {
		t.Fatal(err)
	}
	return g.ID
}

func TestNewRefusesWhatTheGrainCannotGive(t *testing.T) {
	f := newFixture(t, Limits{})
	ctx := context.Background()
	id := f.grain(t)
	for _, tc := range []struct {
		name string
		who  erg.User
		req  erg.GrainTokenRequest
		want error
	}{
		{"a role the app lacks", owner, erg.GrainTokenRequest{Role: "admin"}, erg.ErrInvalid},
		{"someone else's grain", bob, erg.GrainTokenRequest{Role: "editor"}, erg.ErrNotFound},
		{"a long label", owner, erg.GrainTokenRequest{Role: "editor", Label: strings.Repeat("x", 101)}, erg.ErrInvalid},
		{"a past expiry", owner, erg.GrainTokenRequest{Role: "editor", ExpiresIn: -1}, erg.ErrInvalid},
		{"an expiry past a year", owner, erg.GrainTokenRequest{Role: "editor", ExpiresIn: 400 * 24 * 3600}, erg.ErrInvalid},
		{"an unknown user", owner, erg.GrainTokenRequest{Role: "editor", ForUser: "mallory"}, erg.ErrInvalid},
	} {
		if _, err := f.New(ctx, tc.who, id, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := f.New(ctx, owner, "nosuchgrain", erg.GrainTokenRequest{Role: "editor"}); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("no such grain: %v", err)
	}
	var n int
	f.db.QueryRow(`SELECT count(*) FROM grain_tokens`).Scan(&n)
	if n != 0 {
		t.Errorf("%d tokens recorded by refused requests", n)
	}
}

func TestTokenIsStoredHashedShownOnceAndAuthenticates(t *testing.T) {
	f := newFixture(t, Limits{})
	ctx := context.Background()
	id := f.grain(t)
	tok, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor", Label: " sync "})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, Prefix) || tok.URL != "http://api.node.test" || tok.Label != "sync" {
		t.Errorf("token = %+v", tok)
	}
	var stored string
	f.db.QueryRow(`SELECT hash FROM grain_tokens WHERE id = ?`, tok.ID).Scan(&stored)
	if stored == "" || strings.Contains(stored, tok.Token) || stored != grains.HashToken(tok.Token) {
		t.Errorf("the database keeps %q for %q", stored, tok.Token)
	}
	list, err := f.List(ctx, owner, id)
	if err != nil || len(list) != 1 || list[0].Token != "" || list[0].ID != tok.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := f.List(ctx, bob, id); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("bob lists the owner's tokens: %v", err)
	}

	a, err := f.Authenticate(ctx, "192.0.2.1", tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if a.GrainID != id || a.APIPath != "/" || strings.Join(a.Viewer.Permissions, ",") != "read,write" {
		t.Errorf("access = %+v", a)
	}
	if a.Viewer.Username != "" || a.Viewer.UserID != "" {
		t.Errorf("a token made for no one names %q (%q)", a.Viewer.Username, a.Viewer.UserID)
	}
	for _, bad := range []string{"", tok.Token + "x", strings.TrimPrefix(tok.Token, Prefix), Prefix + "guess", strings.ToUpper(tok.Token)} {
		if _, err := f.Authenticate(ctx, "192.0.2.1", bad); !errors.Is(err, erg.ErrUnauthorized) {
			t.Errorf("token %q: %v, want unauthenticated", bad, err)
		}
	}
	if list, _ := f.List(ctx, owner, id); list[0].LastUsed.IsZero() {
		t.Error("last use not recorded")
	}
}

func TestATokenForAUserIsThatUserToTheGrain(t *testing.T) {
	f := newFixture(t, Limits{})
	ctx := context.Background()
	id := f.grain(t)
	tok, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor", ForUser: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ForUser != "bob" {
		t.Errorf("for = %q", tok.ForUser)
	}
	a, err := f.Authenticate(ctx, "192.0.2.1", tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	// The same per-grain id as bob's own sessions in the grain get.
	if a.Viewer.Username != "bob" || a.Viewer.UserID != grainstest.Derive("user-id", "bob", id) {
		t.Errorf("viewer = %+v", a.Viewer)
	}
	// Removing bob removes the token.
	if _, err := f.db.Exec(`DELETE FROM users WHERE id = 'bob'`); err != nil {
		t.Fatal(err)
	}
	f.CutGone(ctx)
	if a.Viewer.Session.Err() == nil {
		t.Error("open requests of a removed user's token were not cut")
	}
	if _, err := f.Authenticate(ctx, "192.0.2.1", tok.Token); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("after the user was removed: %v", err)
	}
}

func TestRevokedExpiredAndDeletedGrainTokensStop(t *testing.T) {
	f := newFixture(t, Limits{})
	ctx := context.Background()
	id := f.grain(t)
	tok, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.Authenticate(ctx, "192.0.2.1", tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Revoke(ctx, bob, tok.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("bob revokes the owner's token: %v", err)
	}
	if a.Viewer.Session.Err() != nil {
		t.Fatal("cut before it was revoked")
	}
	if err := f.Revoke(ctx, owner, tok.ID); err != nil {
		t.Fatal(err)
	}
	if a.Viewer.Session.Err() == nil {
		t.Error("revoking did not cut the open request")
	}
	if _, err := f.Authenticate(ctx, "192.0.2.1", tok.Token); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("revoked: %v", err)
	}
	if err := f.Revoke(ctx, owner, tok.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("revoked twice: %v", err)
	}

	exp, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor", ExpiresIn: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := f.Authenticate(ctx, "192.0.2.1", exp.Token); err != nil || a.Viewer.Expires.IsZero() {
		t.Fatalf("expiring token: %+v, %v", a, err)
	}
	f.db.Exec(`UPDATE grain_tokens SET expires_at = ? WHERE id = ?`, time.Now().Unix()-1, exp.ID)
	if _, err := f.Authenticate(ctx, "192.0.2.1", exp.Token); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("expired: %v", err)
	}

	gone, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.grains.RemoveGrain(ctx, owner, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Authenticate(ctx, "192.0.2.1", gone.Token); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("grain deleted: %v", err)
	}
}

func TestAddressesAreRateLimited(t *testing.T) {
	f := newFixture(t, Limits{Rate: 0.001, Burst: 5, FailureBurst: 3, FailureEvery: time.Hour})
	ctx := context.Background()
	id := f.grain(t)
	tok, err := f.New(ctx, owner, id, erg.GrainTokenRequest{Role: "editor"})
	if err != nil {
		t.Fatal(err)
	}
	// Bad tokens: three, then the address waits, good token or not.
	for i := range 3 {
		if _, err := f.Authenticate(ctx, "2001:db8::1", Prefix+"guess"); !errors.Is(err, erg.ErrUnauthorized) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := f.Authenticate(ctx, "2001:db8::1", tok.Token); !errors.Is(err, erg.ErrTooMany) {
		t.Errorf("a good token after the failure allowance: %v", err)
	}
	// The rest of the /64 is the same home.
	if _, err := f.Authenticate(ctx, "2001:db8::ffff", tok.Token); !errors.Is(err, erg.ErrTooMany) {
		t.Errorf("another address in the /64: %v", err)
	}
	// Other addresses are not held up; each has its own request budget.
	for i := range 5 {
		if _, err := f.Authenticate(ctx, "192.0.2.7", tok.Token); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := f.Authenticate(ctx, "192.0.2.7", tok.Token); !errors.Is(err, erg.ErrTooMany) {
		t.Errorf("past the burst: %v", err)
	}
	if _, err := f.Authenticate(ctx, "192.0.2.8", tok.Token); err != nil {
		t.Errorf("a fresh address: %v", err)
	}
}
