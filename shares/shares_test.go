package shares

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	carol = erg.User{ID: "carol", Username: "carol"}
)

type fixture struct {
	*Service
	grains *grains.Service

	mu       sync.Mutex
	toFriend []erg.ShareRequest
	revoked  []string // friends' share ids
}

// newFixture is shares on a real database and grains service, with the
// echo test app installed, the owner and two users; friends are fakes.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	sqldb, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	if _, err := sqldb.Exec(`UPDATE users SET username = 'olga' WHERE id = 'owner';
		INSERT INTO users (id, username, created_at) VALUES ('bob', 'bob', 0), ('carol', 'carol', 0)`); err != nil {
		t.Fatal(err)
	}
	env := grainstest.New(t, sqldb, dir, map[string]string{"owner": "olga", "bob": "bob", "carol": "carol"})
	env.InstallEcho(t)
	gs := env.Grains
	users := map[string]erg.User{"olga": owner, "bob": bob, "carol": carol}
	f := &fixture{grains: gs}
	f.Service = New(Config{
		DB: sqldb, Grains: gs,
		UserByName: func(_ context.Context, name string) (erg.User, error) {
			if u, ok := users[name]; ok {
				return u, nil
			}
			return erg.User{}, erg.ErrNotFound
		},
		URL: func() string { return "http://node.test" },
		ShareWithFriend: func(_ context.Context, _ erg.User, g *grains.Info, req erg.ShareRequest) (erg.Share, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.toFriend = append(f.toFriend, req)
			return erg.Share{ID: "friendshare", GrainID: g.ID(), Role: req.Role, Friend: req.Friend}, nil
		},
		RevokeFriendShare: func(shareID, _, _ string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.revoked = append(f.revoked, shareID)
		},
	})
	return f
}

func linkToken(t *testing.T, sh erg.Share) string {
	t.Helper()
	token, ok := strings.CutPrefix(sh.URL, "http://node.test/s/")
	if !ok || token == "" {
		t.Fatalf("sharing link %q", sh.URL)
	}
	return token
}

func loginToken(t *testing.T, g erg.Grain) string {
	t.Helper()
	u, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// An anonymous link opens the grain for visitors and signed-in users,
// who then hold it; revoking it ends its sessions and its holders' use.
func TestAnonymousLinkIsHeldAndRevoked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.grains.NewGrain(ctx, owner, "echo", "Shared")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "admin", Anonymous: true}); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a share with a role the app lacks: %v", err)
	}
	if _, err := f.New(ctx, bob, g.ID, erg.ShareRequest{Role: "editor", Anonymous: true}); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a share by another user: %v", err)
	}
	sh, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "editor", Anonymous: true, Label: " link "})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Label != "link" || !sh.Anonymous || sh.GrainID != g.ID {
		t.Errorf("share = %+v", sh)
	}
	token := linkToken(t, sh)

	visit, err := f.Open(ctx, nil, token)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.grains.Handle(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	session, err := h.Redeem(ctx, loginToken(t, visit))
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.Viewer(ctx, session)
	if err != nil || v.Account != "" || len(v.Permissions) != 2 {
		t.Fatalf("the visitor's viewer = %+v, %v", v, err)
	}

	opened, err := f.Open(ctx, &bob, token)
	if err != nil {
		t.Fatal(err)
	}
	if opened.Mine || opened.Role != "editor" || opened.URL == "" {
		t.Errorf("bob opened %+v", opened)
	}
	if list, _ := f.grains.Local(ctx, bob); len(list) != 1 || list[0].ID != g.ID {
		t.Errorf("bob's grains = %+v", list)
	}
	all, err := f.List(ctx, owner, g.ID)
	if err != nil || len(all) != 1 || strings.Join(all[0].Holders, ",") != "bob" {
		t.Errorf("shares = %+v, %v", all, err)
	}
	if _, err := f.List(ctx, bob, g.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a holder listed the shares: %v", err)
	}

	if err := f.Revoke(ctx, bob, sh.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a holder revoked the share: %v", err)
	}
	if err := f.Revoke(ctx, owner, sh.ID); err != nil {
		t.Fatal(err)
	}
	if v.Session.Err() == nil {
		t.Error("the revoked share's session lives on")
	}
	if _, err := h.Viewer(ctx, session); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("the revoked share's session: %v", err)
	}
	if list, _ := f.grains.Local(ctx, bob); len(list) != 0 {
		t.Errorf("bob still has %d grains", len(list))
	}
	if _, err := f.Open(ctx, &bob, token); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a revoked link: %v", err)
	}
	if len(f.revoked) != 0 {
		t.Errorf("a local share was revoked at friends: %v", f.revoked)
	}
}

// A share for one user is theirs at once and nobody else's; a share for a
// friend goes to federation.
func TestShareForOneUserAndForAFriend(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.grains.NewGrain(ctx, owner, "echo", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "editor", ForUser: "olga"}); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a share for its owner: %v", err)
	}
	if _, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "editor", ForUser: "bob", Anonymous: true}); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a share for a user and anonymous: %v", err)
	}
	sh, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "editor", ForUser: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if sh.ForUser != "bob" || strings.Join(sh.Holders, ",") != "bob" {
		t.Errorf("share = %+v", sh)
	}
	if list, _ := f.grains.Local(ctx, bob); len(list) != 1 {
		t.Errorf("bob's grains before opening the link: %+v", list)
	}
	token := linkToken(t, sh)
	if _, err := f.Open(ctx, nil, token); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("a visitor opened a user's link: %v", err)
	}
	if _, err := f.Open(ctx, &carol, token); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("another user opened it: %v", err)
	}
	if got, err := f.Open(ctx, &bob, token); err != nil || got.Mine || got.URL == "" {
		t.Errorf("bob opened it: %+v, %v", got, err)
	}

	fs, err := f.New(ctx, owner, g.ID, erg.ShareRequest{Role: "editor", Friend: "zoe"})
	if err != nil || fs.ID != "friendshare" || len(f.toFriend) != 1 || f.toFriend[0].Friend != "zoe" {
		t.Errorf("a share to a friend = %+v, %v; sent %+v", fs, err, f.toFriend)
	}
}
