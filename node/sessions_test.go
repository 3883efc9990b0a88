package node

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"erg"
	"erg/db"
)

// A session on a friend's grain lives in the one session table: it
// survives this node's restart, and ends with the user it belongs to.
// Revoking the share answers its requests with why.
func TestRemoteSessionSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	g, err := a.grains.NewGrain(ctx, a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"})
	if err != nil {
		t.Fatal(err)
	}
	rg := sharedWith(t, b, b.owner(), "Plans")
	origin := openOn(t, b, b.owner(), rg.ID)
	if code, body := putNote(t, b.http, origin, "hello", 0); code != 200 {
		t.Fatalf("put through b: %d %s", code, body)
	}
	var rows int
	b.db.QueryRow(`SELECT count(*) FROM grain_sessions WHERE remote_grain_id = ? AND user_id = ?`, rg.ID, ownerID).Scan(&rows)
	if rows != 1 {
		t.Errorf("%d session rows for the friend's grain, want 1", rows)
	}
	u, _ := url.Parse(origin)
	cookies := b.http.Jar.Cookies(u)
	cfg := b.cfg
	b.Close()

	b2 := startNode(t, func(c *Config) { c.DataDir = cfg.DataDir; c.Name = "bnode"; c.Owner = "bob" })
	origin2 := b2.grainOrigin(rg.ID)
	u2, _ := url.Parse(origin2)
	b2.http.Jar.SetCookies(u2, cookies)
	if code, body := b2.get(origin2 + "/api/note"); code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("the session after b restarted: %d %s", code, body)
	}

	if err := a.shares.Revoke(ctx, a.owner(), sh.ID); err != nil {
		t.Fatal(err)
	}
	if code, body := b2.get(origin2 + "/api/note"); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("after revoke: %d %s", code, body)
	}
}

// The migration to one session table keeps the sessions of both kinds,
// and the login tokens.
func TestMigrationMergesRemoteSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erg.db")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	qs := []string{db.Migrations()[0], db.Migrations()[1], db.Migrations()[2], `PRAGMA user_version = 3`,
		`INSERT INTO apps VALUES ('echo', 'Echo', 1, '1', '{}', '/x', 0)`,
		`INSERT INTO grains (id, app_id, title, created_at, last_used) VALUES ('g1', 'echo', 'mine', 0, 0)`,
		`INSERT INTO friends (peer, name, added_at) VALUES ('p', 'anode', 0)`,
		`INSERT INTO remote_grains (id, peer, token, user_id, title, app_name, role, owner, created_at) VALUES ('r1', 'p', x'01', 'owner', 't', 'Notes', 'editor', 'alice', 0)`,
		`INSERT INTO grain_sessions VALUES ('hl', 'g1', 0, 9999999999, 'owner', NULL)`,
		`INSERT INTO remote_sessions VALUES ('hr', 'r1', 9999999999)`,
		`INSERT INTO login_tokens VALUES ('t1', 'g1', 9999999999, 'owner', NULL)`,
	}
	for _, q := range qs {
		if _, err := sqldb.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sqldb.Close()
	sqldb, err = db.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	var local, remote, tokens int
	sqldb.QueryRow(`SELECT count(*) FROM grain_sessions WHERE hash = 'hl' AND grain_id = 'g1' AND remote_grain_id IS NULL`).Scan(&local)
	sqldb.QueryRow(`SELECT count(*) FROM grain_sessions WHERE hash = 'hr' AND remote_grain_id = 'r1' AND user_id = 'owner' AND grain_id IS NULL`).Scan(&remote)
	sqldb.QueryRow(`SELECT count(*) FROM login_tokens WHERE hash = 't1' AND grain_id = 'g1'`).Scan(&tokens)
	if local != 1 || remote != 1 || tokens != 1 {
		t.Errorf("after the upgrade: %d local sessions, %d remote, %d login tokens; want 1 each", local, remote, tokens)
	}
	// Removing the friend's grain removes its sessions.
	if _, err := sqldb.Exec(`DELETE FROM remote_grains WHERE id = 'r1'`); err != nil {
		t.Fatal(err)
	}
	sqldb.QueryRow(`SELECT count(*) FROM grain_sessions WHERE hash = 'hr'`).Scan(&remote)
	if remote != 0 {
		t.Error("a removed friend's grain kept its session")
	}
}
