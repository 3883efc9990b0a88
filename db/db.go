// Package db opens the node's metadata database and brings its schema up
// to date. It is a leaf: every feature's tables are made by one migration
// list here, so a feature's tests can open a real database with the whole
// schema in a temporary directory.
package db

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// migrations are applied in order; PRAGMA user_version counts how many ran.
// Never edit one that has shipped: append a new one.
var migrations = []string{
	`CREATE TABLE apps (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		version INTEGER NOT NULL,
		display_version TEXT NOT NULL,
		manifest TEXT NOT NULL,
		tree TEXT NOT NULL,
		installed_at INTEGER NOT NULL
	);
	CREATE TABLE grains (
		id TEXT PRIMARY KEY,
		app_id TEXT NOT NULL REFERENCES apps(id),
		title TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		last_used INTEGER NOT NULL
	);
	CREATE TABLE login_tokens (
		hash TEXT PRIMARY KEY,
		grain_id TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE grain_sessions (
		hash TEXT PRIMARY KEY,
		grain_id TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE settings (
		key TEXT PRIMARY KEY,
		value BLOB NOT NULL
	);`,
	// Accounts and sharing. The owner's account id is the literal "owner",
	// which is what grains were told before accounts existed, so their
	// X-Erg-User-Id stays the same. Sessions and login tokens from before
	// say nothing about who holds them; they are dropped (a sign-in again
	// is all it costs).
	`CREATE TABLE users (
		id TEXT PRIMARY KEY,
		username TEXT NOT NULL UNIQUE COLLATE NOCASE,
		password_hash TEXT NOT NULL DEFAULT '',
		is_owner INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL
	);
	INSERT INTO users (id, username, is_owner, created_at) VALUES ('owner', '', 1, unixepoch());
	CREATE TABLE web_sessions (
		hash TEXT PRIMARY KEY,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		csrf TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE invites (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		username TEXT NOT NULL UNIQUE COLLATE NOCASE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE api_tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		label TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	ALTER TABLE grains ADD COLUMN owner_id TEXT NOT NULL DEFAULT 'owner'; -- SQLite allows no REFERENCES with a default here; removing a user removes their grains in code
	CREATE TABLE shares (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		grain_id TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		role TEXT NOT NULL,
		for_user TEXT REFERENCES users(id) ON DELETE CASCADE,
		anonymous INTEGER NOT NULL DEFAULT 0,
		label TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE share_holders (
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		share_id TEXT NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
		grain_id TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		added_at INTEGER NOT NULL,
		PRIMARY KEY (user_id, share_id)
	);
	DELETE FROM grain_sessions;
	DELETE FROM login_tokens;
	ALTER TABLE grain_sessions ADD COLUMN user_id TEXT REFERENCES users(id) ON DELETE CASCADE;
	ALTER TABLE grain_sessions ADD COLUMN share_id TEXT REFERENCES shares(id) ON DELETE CASCADE;
	ALTER TABLE login_tokens ADD COLUMN user_id TEXT REFERENCES users(id) ON DELETE CASCADE;
	ALTER TABLE login_tokens ADD COLUMN share_id TEXT REFERENCES shares(id) ON DELETE CASCADE;`,
	// Friends (other nodes) and grains shared between them. A share to a
	// friend is a row in shares with friend_peer set: it has no link, only
	// a token the friend's node holds. remote_grains are grains friends
	// shared with this node, each for one local user.
	`CREATE TABLE friends (
		peer TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE COLLATE NOCASE,
		addrs TEXT NOT NULL DEFAULT '[]',
		added_at INTEGER NOT NULL
	);
	CREATE TABLE friend_invites (
		hash TEXT PRIMARY KEY,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	ALTER TABLE shares ADD COLUMN friend_peer TEXT REFERENCES friends(peer) ON DELETE CASCADE;
	ALTER TABLE shares ADD COLUMN friend_user TEXT NOT NULL DEFAULT '';
	CREATE TABLE remote_grains (
		id TEXT PRIMARY KEY,
		peer TEXT NOT NULL REFERENCES friends(peer) ON DELETE CASCADE,
		token BLOB NOT NULL,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		title TEXT NOT NULL,
		app_name TEXT NOT NULL,
		role TEXT NOT NULL,
		permissions TEXT NOT NULL DEFAULT '',
		owner TEXT NOT NULL,
		revoked INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		UNIQUE (peer, token)
	);
	CREATE TABLE remote_sessions (
		hash TEXT PRIMARY KEY,
		grain_id TEXT NOT NULL REFERENCES remote_grains(id) ON DELETE CASCADE,
		expires_at INTEGER NOT NULL
	);`,
	// The app store: listings this node published (to put in the DHT
	// again) and package roots it serves (to announce again). Nodes made
	// before this migration created these tables when the store started,
	// so they may exist already.
	`CREATE TABLE IF NOT EXISTS store_published (
		app_id TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		record BLOB NOT NULL,
		published_at INTEGER NOT NULL
	);
	CREATE TABLE IF NOT EXISTS store_provided (
		cid TEXT PRIMARY KEY,
		app_id TEXT NOT NULL,
		added_at INTEGER NOT NULL
	);`,
	// One session table and one login-token table for this node's grains
	// and those friends shared: a row names one or the other. A friend's
	// grain's session records its user, so removing the user ends it.
	`CREATE TABLE grain_sessions_new (
		hash TEXT PRIMARY KEY,
		grain_id TEXT REFERENCES grains(id) ON DELETE CASCADE,
		remote_grain_id TEXT REFERENCES remote_grains(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
		share_id TEXT REFERENCES shares(id) ON DELETE CASCADE,
		CHECK ((grain_id IS NULL) <> (remote_grain_id IS NULL))
	);
	INSERT INTO grain_sessions_new (hash, grain_id, created_at, expires_at, user_id, share_id)
		SELECT hash, grain_id, created_at, expires_at, user_id, share_id FROM grain_sessions;
	INSERT INTO grain_sessions_new (hash, remote_grain_id, created_at, expires_at, user_id)
		SELECT s.hash, s.grain_id, unixepoch(), s.expires_at, g.user_id FROM remote_sessions s JOIN remote_grains g ON g.id = s.grain_id;
	DROP TABLE grain_sessions;
	DROP TABLE remote_sessions;
	ALTER TABLE grain_sessions_new RENAME TO grain_sessions;
	CREATE TABLE login_tokens_new (
		hash TEXT PRIMARY KEY,
		grain_id TEXT REFERENCES grains(id) ON DELETE CASCADE,
		remote_grain_id TEXT REFERENCES remote_grains(id) ON DELETE CASCADE,
		expires_at INTEGER NOT NULL,
		user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
		share_id TEXT REFERENCES shares(id) ON DELETE CASCADE,
		CHECK ((grain_id IS NULL) <> (remote_grain_id IS NULL))
	);
	INSERT INTO login_tokens_new (hash, grain_id, expires_at, user_id, share_id)
		SELECT hash, grain_id, expires_at, user_id, share_id FROM login_tokens;
	DROP TABLE login_tokens;
	ALTER TABLE login_tokens_new RENAME TO login_tokens;`,
	// API tokens of grains (package apitokens): a secret a program sends
	// to the API origin for one grain with one role. Deleting the grain,
	// its maker or the user it is for deletes the token.
	`CREATE TABLE grain_tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		grain_id TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		role TEXT NOT NULL,
		created_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		for_user TEXT REFERENCES users(id) ON DELETE CASCADE,
		label TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL DEFAULT 0,
		last_used INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX grain_tokens_grain ON grain_tokens (grain_id);`,
	// The host uid each grain's sandbox runs as when the node runs as
	// root, one per grain from the sandbox runner's range. No foreign key:
	// the row outlives the grain's row until its storage is gone, so the
	// uid is not given to another grain while files of this one remain.
	// grain_limits are the node owner's limits for one grain, over its
	// app's and the node's defaults; NULL is "not set".
	`CREATE TABLE grain_uids (
		grain_id TEXT PRIMARY KEY,
		uid INTEGER NOT NULL UNIQUE
	);
	CREATE TABLE grain_limits (
		grain_id TEXT PRIMARY KEY REFERENCES grains(id) ON DELETE CASCADE,
		cpu_percent INTEGER
	);`,
	// The powerbox (package powerbox): claims are the single-use tokens the
	// shell hands a grain's frame for a grain the user picked; grants are
	// what a grain's server claimed them for, which it uses through the
	// bridge. A target is a grain of this node's or a friend's grain
	// served here (remote_grains), so it has no foreign key: a grant to a
	// grain that is gone stops working and is deleted.
	`CREATE TABLE powerbox_claims (
		hash TEXT PRIMARY KEY,
		requester TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		target TEXT NOT NULL,
		role TEXT NOT NULL,
		label TEXT NOT NULL DEFAULT '',
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE powerbox_grants (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		requester TEXT NOT NULL REFERENCES grains(id) ON DELETE CASCADE,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		target TEXT NOT NULL,
		role TEXT NOT NULL,
		label TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	);
	CREATE INDEX powerbox_grants_requester ON powerbox_grants (requester);
	CREATE INDEX powerbox_grants_target ON powerbox_grants (target);`,
	// Backups: the keys the node keeps (never the recovery code), the
	// schedule and retention, where backups go, how each went, and the
	// space this node offers friends for theirs.
	`CREATE TABLE backup_settings (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		keys TEXT NOT NULL DEFAULT '',
		every_seconds INTEGER NOT NULL DEFAULT 86400,
		last INTEGER NOT NULL DEFAULT 3,
		daily INTEGER NOT NULL DEFAULT 7,
		weekly INTEGER NOT NULL DEFAULT 4,
		monthly INTEGER NOT NULL DEFAULT 6
	);
	INSERT INTO backup_settings (id) VALUES (1);
	CREATE TABLE backup_destinations (
		id TEXT PRIMARY KEY,
		kind TEXT NOT NULL CHECK (kind IN ('dir', 'friend')),
		target TEXT NOT NULL,
		added_at INTEGER NOT NULL,
		UNIQUE (kind, target)
	);
	CREATE TABLE backup_status (
		dest_id TEXT NOT NULL REFERENCES backup_destinations(id) ON DELETE CASCADE,
		source TEXT NOT NULL,
		last_ok INTEGER NOT NULL DEFAULT 0,
		last_try INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		failing_since INTEGER NOT NULL DEFAULT 0,
		size INTEGER NOT NULL DEFAULT 0,
		pause_us INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (dest_id, source)
	);
	CREATE TABLE backup_offers (
		peer TEXT PRIMARY KEY,
		quota INTEGER NOT NULL,
		restore_peer TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	);`,
	// The node owner's bound on one grain's /var, in MiB (grains/disk.go).
	`ALTER TABLE grain_limits ADD COLUMN disk_mb INTEGER;`,
	// A grain removed (or a friend's grain no longer served here) takes
	// the powerbox grants it held or was the target of with it (a target
	// has no foreign key: it may be either), and those left by grains
	// removed before this.
	`CREATE TRIGGER powerbox_grants_grain_removed AFTER DELETE ON grains BEGIN
		DELETE FROM powerbox_grants WHERE requester = OLD.id OR target = OLD.id;
	END;
	CREATE TRIGGER powerbox_grants_remote_grain_removed AFTER DELETE ON remote_grains BEGIN
		DELETE FROM powerbox_grants WHERE target = OLD.id;
	END;
	DELETE FROM powerbox_grants WHERE requester NOT IN (SELECT id FROM grains)
		OR (target NOT IN (SELECT id FROM grains) AND target NOT IN (SELECT id FROM remote_grains));`,
	// What a friend's grain's app offers (comma-separated, as permissions
	// are) and the roles its share hands on (JSON: name, title,
	// permissions), so the powerbox can offer it and grant less than the
	// share; empty for shares from before, until they are restored.
	`ALTER TABLE remote_grains ADD COLUMN offers TEXT NOT NULL DEFAULT '';
	ALTER TABLE remote_grains ADD COLUMN roles TEXT NOT NULL DEFAULT '';`,
	// Where a friend's grain's app serves its API, so a powerbox grant to
	// it gets the same paths as one to a grain here; empty: none known.
	`ALTER TABLE remote_grains ADD COLUMN api_path TEXT NOT NULL DEFAULT '';`,
}

// Migrations returns the schema migrations in the order they apply; the
// database's PRAGMA user_version is how many of them it has had.
func Migrations() []string { return append([]string(nil), migrations...) }

// Open opens (creating if needed) the node's metadata database at path
// and applies the migrations it lacks. WAL with synchronous=FULL makes
// every committed transaction survive a crash of the node, not just a
// clean exit; foreign keys are enforced.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	// SQLite creates the file (and its -wal and -shm) world-readable;
	// creating it first makes all three owner-only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"busy_timeout(10000)",
		"foreign_keys(1)",
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// Migrate applies, each in its own transaction, the migrations db has not
// had yet. A database from a newer erg, with more migrations than this
// one knows, is refused.
func Migrate(ctx context.Context, db *sql.DB) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema %d is newer than this erg (%d): upgrade erg", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
