// Package grainstest starts a real grains service for the tests of the
// packages built on it (shares, fedgrains): on a database and data dir the
// test made, with the real sandbox runner (the test is skipped where none
// can run), and installs the echo test app into it.
package grainstest

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"erg/grains"
	"erg/install"
	"erg/internal/testkit"
	"erg/sandbox"
)

// Derive is the stable-id function the services of a test node share.
func Derive(parts ...string) string { return grains.HashToken(strings.Join(parts, "\x00"))[:32] }

// Origin is a test node's grain origin.
func Origin(id string) string { return "http://g-" + id + ".test" }

// Env is a grains service and what it stands on.
type Env struct {
	Grains      *grains.Service
	DB          *sql.DB
	Dir         string
	InstallLock *sync.Mutex
}

// New starts a grains service on db, with its data in dir; usernames maps
// account ids to usernames, as the accounts service would.
func New(t *testing.T, db *sql.DB, dir string, usernames map[string]string) *Env {
	t.Helper()
	runner, err := sandbox.NewRunner(sandbox.Config{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Skip("no sandbox here:", err)
	}
	t.Cleanup(func() { runner.Close() })
	e := &Env{DB: db, Dir: dir, InstallLock: &sync.Mutex{}}
	e.Grains, err = grains.New(context.Background(), grains.Config{
		DB: db, Runner: runner,
		Dir: filepath.Join(dir, "grains"), PackagesDir: filepath.Join(dir, "packages"), TempDir: filepath.Join(dir, "tmp"),
		InstallLock: e.InstallLock, Idle: time.Minute, Derive: Derive, Origin: Origin,
		Usernames: func(context.Context) (map[string]string, error) { return usernames, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Grains.Close)
	return e
}

// InstallEcho installs the echo test app, through the one install
// pipeline, as the node does.
func (e *Env) InstallEcho(t *testing.T) {
	t.Helper()
	dir := filepath.Join(e.Dir, "packages")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	inst := install.New(install.Config{DB: e.DB, Dir: dir, Lock: e.InstallLock, Recorded: e.Grains.AppRecorded})
	if _, err := inst.Install(context.Background(), install.Tree(filepath.Join(testkit.Apps(t), "echo")), install.Options{}); err != nil {
		t.Fatal(err)
	}
}
