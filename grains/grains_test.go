package grains

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
	"erg/db"
	"erg/install"
	"erg/internal/testkit"
	"erg/sandbox"
)

var (
	owner = erg.User{ID: "owner", Username: "olga", Owner: true}
	bob   = erg.User{ID: "bob", Username: "bob"}
)

// testService is a Service on a fresh data dir with a real database, the
// real sandbox runner and the echo test app installed. Usernames come
// from a fake.
func testService(t testing.TB) *Service {
	t.Helper()
	return testServiceWith(t, nil)
}

// testServiceWith is testService with its Config changed by edit first.
func testServiceWith(t testing.TB, edit func(*Config)) *Service {
	t.Helper()
	runner, err := sandbox.NewRunner(sandbox.Config{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Skip("no sandbox here:", err)
	}
	t.Cleanup(func() { runner.Close() })
	ctx := context.Background()
	dir := t.TempDir()
	sqldb, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	if _, err := sqldb.Exec(`INSERT INTO users (id, username, created_at) VALUES ('bob', 'bob', 0); UPDATE users SET username = 'olga' WHERE id = 'owner'`); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "packages"), 0o700); err != nil {
		t.Fatal(err)
	}
	var installMu sync.Mutex
	var s *Service
	inst := install.New(install.Config{
		DB: sqldb, Dir: filepath.Join(dir, "packages"), Lock: &installMu, Log: slog.New(slog.DiscardHandler),
		Recorded: func(m *apppkg.Manifest, tree string) {
			if s != nil {
				s.AppRecorded(m, tree)
			}
		},
	})
	if _, err := inst.Install(ctx, install.Tree(filepath.Join(testkit.Apps(t), "echo")), install.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		DB: sqldb, Runner: runner,
		Dir: filepath.Join(dir, "grains"), PackagesDir: filepath.Join(dir, "packages"), TempDir: filepath.Join(dir, "tmp"),
		InstallLock: &installMu, Idle: time.Minute,
		Derive: func(parts ...string) string { return HashToken(strings.Join(parts, "\x00"))[:32] },
		Usernames: func(context.Context) (map[string]string, error) {
			return map[string]string{"owner": "olga", "bob": "bob"}, nil
		},
		Origin: func(id string) string { return "http://g-" + id + ".test" },
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err = New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// loginToken is the token in a grain's one-time login URL.
func loginToken(t *testing.T, g erg.Grain) string {
	t.Helper()
	u, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "g-"+g.ID+".test" || u.Path != "/_erg/login" {
		t.Fatalf("login URL %s is not on the grain's origin", g.URL)
	}
	return u.Query().Get("token")
}

// A new grain is its owner's; its login token is spent once for a session
// the owner's role goes with, and the grain is hidden from anyone else.
func TestNewGrainLoginsAndSessions(t *testing.T) {
	s := testService(t)
	ctx := context.Background()
	g, err := s.NewGrain(ctx, owner, "Echo", "")
	if err != nil {
		t.Fatal(err)
	}
	if g.Title != "Untitled Echo" || !g.Mine || g.Owner != "olga" || g.Role != "editor" {
		t.Errorf("new grain = %+v", g)
	}
	if _, err := s.Own(bob, g.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user's Own: %v", err)
	}
	if err := s.Rename(ctx, bob, g.ID, "mine now"); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user renamed the grain: %v", err)
	}
	if list, _ := s.Local(ctx, bob); len(list) != 0 {
		t.Errorf("bob lists %d grains", len(list))
	}
	h, err := s.Handle(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	token := loginToken(t, g)
	session, err := h.Redeem(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Redeem(ctx, token); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a login token redeemed twice: %v", err)
	}
	v, err := h.Viewer(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if v.Account != owner.ID || v.Username != "olga" || strings.Join(v.Permissions, ",") != "read,write" || v.UserID == "" {
		t.Errorf("viewer = %+v", v)
	}
	if _, err := h.Viewer(ctx, "not a session"); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a made-up session: %v", err)
	}
	// Dropping the session cuts it, and its context.
	s.Sessions().Drop(func(se Session) bool { return se.AccountID == owner.ID })
	if v.Session.Err() == nil {
		t.Error("a dropped session's context is not cancelled")
	}
	// The row is still there, so the session is read afresh.
	if _, err := h.Viewer(ctx, session); err != nil {
		t.Errorf("the session after a drop of the cache: %v", err)
	}
	if err := s.Rename(ctx, owner, g.ID, "  Notes "); err != nil {
		t.Fatal(err)
	}
	if got := s.Count(); got != 1 {
		t.Errorf("Count = %d", got)
	}
	list, err := s.Local(ctx, owner)
	if err != nil || len(list) != 1 || list[0].Title != "Notes" {
		t.Errorf("Local = %+v, %v", list, err)
	}
}

// A grain starts on its first request, is stopped on demand, and once
// removed leaves no storage or sessions.
func TestGrainRunsAndIsRemoved(t *testing.T) {
	s := testService(t)
	ctx := context.Background()
	g, err := s.NewGrain(ctx, owner, "echo", "run")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := s.Handle(g.ID)
	session, err := h.Redeem(ctx, loginToken(t, g))
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.Viewer(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if body := get(t, h, "/write?v=kept"); body != "" {
		t.Errorf("write = %q", body)
	}
	if !s.Running(g.ID) || s.Starts() != 1 || s.RunningCount() != 1 {
		t.Errorf("running %v, starts %d, running count %d", s.Running(g.ID), s.Starts(), s.RunningCount())
	}
	if err := s.Stop(ctx, g.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if s.Running(g.ID) {
		t.Error("still running after Stop")
	}
	if body := get(t, h, "/read"); body != "kept" {
		t.Errorf("read after a restart = %q", body)
	}
	if s.Starts() != 2 {
		t.Errorf("starts = %d, want 2", s.Starts())
	}
	if err := s.RemoveGrain(ctx, bob, g.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user removed the grain: %v", err)
	}
	if err := s.RemoveGrain(ctx, owner, g.ID); err != nil {
		t.Fatal(err)
	}
	if v.Session.Err() == nil {
		t.Error("the removed grain's session lives on")
	}
	if _, err := os.Stat(s.Dir(g.ID)); !os.IsNotExist(err) {
		t.Errorf("the removed grain's storage: %v", err)
	}
	if _, err := s.Lookup(g.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("the removed grain is found: %v", err)
	}
}

func get(t *testing.T, h Handle, path string) string {
	t.Helper()
	rt, release, err := h.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	req, _ := http.NewRequest("GET", "http://grain"+path, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// A backup restores into a new grain with the same data, and a restore
// larger than the limit leaves nothing.
func TestBackupRestores(t *testing.T) {
	s := testService(t)
	ctx := context.Background()
	g, err := s.NewGrain(ctx, owner, "echo", "Saved")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(g.ID), "var", "data"), []byte("saved"), 0o600); err != nil {
		t.Fatal(err)
	}
	var zip bytes.Buffer
	if err := s.Backup(ctx, bob, g.ID, &zip); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user's backup: %v", err)
	}
	if err := s.Backup(ctx, owner, g.ID, &zip); err != nil {
		t.Fatal(err)
	}
	r, err := s.Restore(ctx, bob, bytes.NewReader(zip.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == g.ID || r.Title != "Saved" || r.Owner != "bob" || !r.Mine {
		t.Errorf("restored = %+v", r)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir(r.ID), "var", "data"))
	if err != nil || string(data) != "saved" {
		t.Errorf("restored data = %q, %v", data, err)
	}
	s.SetRestoreLimit(2)
	if _, err := s.Restore(ctx, bob, bytes.NewReader(zip.Bytes())); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a restore over the limit: %v", err)
	}
	if got := s.Count(); got != 2 {
		t.Errorf("Count = %d after a failed restore, want 2", got)
	}
	all, err := s.All(ctx, owner)
	// Size is the disk its /var takes, as its usage says: the 5 bytes of
	// "saved" in a block at least.
	if err != nil || len(all) != 2 || all[0].Owner != "bob" || all[1].Usage == nil || all[1].Size != all[1].Usage.DiskBytes || all[1].Size < 5 {
		t.Errorf("All = %+v, %v", all, err)
	}
	if _, err := s.All(ctx, bob); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("All for a user: %v", err)
	}
}

// HashToken is SHA-256 in hex for a token of any length, on the stack or
// not, and a cached session's check allocates nothing for its hash.
func TestHashToken(t *testing.T) {
	for _, n := range []int{0, 1, 32, 43, 64, 65, 200} {
		tok := strings.Repeat("k", n)
		sum := sha256.Sum256([]byte(tok))
		if got, want := HashToken(tok), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("HashToken of %d bytes = %s, want %s", n, got, want)
		}
	}
	tok := RandomToken()
	var b hashBuf
	if a := testing.AllocsPerRun(100, func() { hashToken(&b, tok) }); a != 0 {
		t.Errorf("hashing a session token allocates %.0f times", a)
	}
}
