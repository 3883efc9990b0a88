package db

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMakesTheWholeSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erg.db")
	d, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var version int
	d.QueryRow("PRAGMA user_version").Scan(&version)
	if version != len(Migrations()) {
		t.Errorf("user_version %d, want %d", version, len(Migrations()))
	}
	for _, table := range []string{"apps", "grains", "users", "web_sessions", "invites", "api_tokens",
		"shares", "friends", "remote_grains", "store_published", "store_provided"} {
		var n int
		d.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
		if n != 1 {
			t.Errorf("no table %s", table)
		}
	}
	var fk int
	d.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	if fk != 1 {
		t.Error("foreign keys are off")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", fi.Mode().Perm())
	}
	// Opening again applies nothing and keeps the data.
	if _, err := d.Exec(`INSERT INTO store_provided VALUES ('c', 'app', 1)`); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	d.QueryRow(`SELECT count(*) FROM store_provided`).Scan(&n)
	if n != 1 {
		t.Errorf("%d rows after opening again", n)
	}
}

// TestStoreTablesMadeBeforeTheirMigration opens a data dir whose store
// tables were made when its store started, before they had a migration.
func TestStoreTablesMadeBeforeTheirMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erg.db")
	old := Migrations()[:3]
	raw := openRaw(t, path)
	for i, q := range old {
		mustExec(t, raw, q)
		mustExec(t, raw, fmt.Sprintf("PRAGMA user_version = %d", i+1))
	}
	mustExec(t, raw, `CREATE TABLE IF NOT EXISTS store_published (
	app_id TEXT PRIMARY KEY,
	version INTEGER NOT NULL,
	record BLOB NOT NULL,
	published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_provided (
	cid TEXT PRIMARY KEY,
	app_id TEXT NOT NULL,
	added_at INTEGER NOT NULL
);`)
	mustExec(t, raw, `INSERT INTO store_published VALUES ('app', 2, x'00', 5)`)
	raw.Close()

	d, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var version, n int
	d.QueryRow("PRAGMA user_version").Scan(&version)
	d.QueryRow(`SELECT count(*) FROM store_published WHERE app_id = 'app' AND version = 2`).Scan(&n)
	if version != len(Migrations()) || n != 1 {
		t.Errorf("after the upgrade: user_version %d, %d published rows", version, n)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "erg.db")
	raw := openRaw(t, path)
	mustExec(t, raw, "PRAGMA user_version = 1000")
	raw.Close()
	d, err := Open(context.Background(), path)
	if err == nil {
		d.Close()
		t.Fatal("a database from a newer erg opened")
	}
	if !strings.Contains(err.Error(), "upgrade erg") {
		t.Errorf("error %q does not say to upgrade", err)
	}
}

func TestMigrationsReturnsACopy(t *testing.T) {
	m := Migrations()
	m[0] = ""
	if Migrations()[0] == "" {
		t.Error("Migrations shares its list with the caller")
	}
}

func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustExec(t *testing.T, d *sql.DB, q string) {
	t.Helper()
	if _, err := d.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
