package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/backup"
)

// openAndGet signs n's client in to a grain and GETs path on its origin.
func (n *testNode) openAndGet(id, path string) (int, string) {
	n.t.Helper()
	g, err := n.OpenGrain(context.Background(), n.owner(), id)
	if err != nil {
		n.t.Fatalf("open grain: %v", err)
	}
	resp, err := n.http.Get(g.URL)
	if err != nil {
		n.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	origin, _, _ := strings.Cut(g.URL, "/_erg/")
	return n.get(origin + path)
}

func mustRun(t *testing.T, n *testNode) erg.BackupRun {
	t.Helper()
	run, err := n.backups.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Failed) > 0 {
		t.Fatalf("backup failed: %v", run.Failed)
	}
	return run
}

// A running grain is backed up (frozen for the copy) to a directory;
// it comes back as a new grain at an older point in time and over
// itself; then the whole node comes back onto an empty data dir with its
// identity, and its grain answers as before.
func TestBackupRestoreGrainAndNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	if code, body := n.get(origin + "/write?v=first"); code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	if _, err := n.backups.Run(ctx); err == nil || !errors.Is(err, erg.ErrInvalid) {
		t.Fatalf("a backup without a recovery code: %v", err)
	}
	code, err := n.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(t.TempDir(), "usb")
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: repo}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: "relative/dir"}); !errors.Is(err, erg.ErrInvalid) {
		t.Fatalf("a relative directory: %v", err)
	}
	if !n.grains.Running(id) {
		t.Fatal("the grain should be running for this test")
	}
	// The first run (the node's packages, tens of MiB) says how far it
	// has come while it goes, and nothing once it is over.
	done := make(chan struct{})
	go func() { defer close(done); mustRun(t, n) }()
	var steps []erg.BackupProgress
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(2 * time.Millisecond):
		}
		if st, err := n.backups.Status(ctx); err == nil && st.Step != nil {
			steps = append(steps, *st.Step)
		}
	}
	var moved bool
	for _, p := range steps {
		moved = moved || p.What == "backup" && p.BytesDone > 0 && p.BytesDone <= p.Bytes && p.Sources == 2
	}
	if !moved {
		t.Fatalf("no progress seen during the run: %+v", steps)
	}
	snaps, err := n.backups.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for _, s := range snaps {
		if s.Source == id {
			first = s.Name
		}
	}
	if first == "" {
		t.Fatalf("no snapshot of the grain in %+v", snaps)
	}
	st, err := n.backups.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Warning != "" || st.Progress != "" || st.Step != nil || len(st.Destinations) != 1 || st.Destinations[0].LastOK.IsZero() || st.Destinations[0].Used == 0 {
		t.Fatalf("status after a backup: %+v", st)
	}
	n.get(origin + "/write?v=second")
	mustRun(t, n)

	if _, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: backup.NewCode(), Grain: id}); !errors.Is(err, erg.ErrForbidden) {
		t.Fatalf("restore with another code: %v", err)
	}
	old, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: code, Grain: id, Snapshot: first})
	if err != nil {
		t.Fatal(err)
	}
	if old.Grain.ID == id {
		t.Fatal("a restore as a new grain reused the id")
	}
	if _, body := n.openAndGet(old.Grain.ID, "/read"); body != "first" {
		t.Fatalf("the grain restored to the first snapshot reads %q", body)
	}
	n.get(origin + "/write?v=third")
	if _, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: code, Grain: id, Over: true}); err != nil {
		t.Fatal(err)
	}
	if _, body := n.openAndGet(id, "/read"); body != "second" {
		t.Fatalf("the grain restored over itself reads %q", body)
	}

	// Everything, onto an empty data dir.
	nodeID := n.NodeID()
	mustRun(t, n)
	n.Close()
	fresh := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(fresh, 0o700)
	dir, err := backup.OpenDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.RestoreNode(ctx, code, []backup.Named{{Name: repo, Dest: dir}}, fresh, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Grains != 2 || len(res.Missing) != 0 {
		t.Fatalf("restored %+v", res)
	}
	if _, err := backup.RestoreNode(ctx, code, []backup.Named{{Name: repo, Dest: dir}}, fresh, nil); err == nil {
		t.Fatal("a restore onto a data dir holding a node went ahead")
	}
	m := startNode(t, func(c *Config) { c.DataDir = fresh; c.AppsDir = "" })
	if m.NodeID() != nodeID {
		t.Fatalf("restored node is %s, was %s", m.NodeID(), nodeID)
	}
	if _, body := m.openAndGet(id, "/read"); body != "second" {
		t.Fatalf("the restored node's grain reads %q", body)
	}
	if _, body := m.openAndGet(old.Grain.ID, "/read"); body != "first" {
		t.Fatalf("the restored node's other grain reads %q", body)
	}
	// The restored node goes on backing up into the same repository.
	mustRun(t, m)
}

// A friend's node keeps A's backups within the space it offers, holds
// nothing of them in the clear, and refuses clearly once the offer is
// withdrawn, without touching anything on A.
func TestBackupToAFriend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, nil)
	b := startNode(t, func(c *Config) { c.Owner = "bob" })
	befriend(t, a, b)
	id, origin := a.newGrain("echo")
	a.get(origin + "/write?v=PLANTED-FRIEND-CONTENT")
	if err := a.grains.Rename(ctx, a.owner(), id, "PLANTED-FRIEND-TITLE"); err != nil {
		t.Fatal(err)
	}
	code, err := a.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bobName := a.friends.NameOf(ctx, b.p2p.host.ID().String())
	if _, err := a.backups.AddDestination(ctx, erg.BackupDestinationRequest{Friend: bobName}); err != nil {
		t.Fatal(err)
	}
	run, err := a.backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Failed) == 0 || !strings.Contains(strings.Join(run.Failed, " "), "no space offered") {
		t.Fatalf("a backup to a friend who offered nothing: %v", run.Failed)
	}
	aliceName := b.friends.NameOf(ctx, a.p2p.host.ID().String())
	if err := b.backups.OfferSpace(ctx, b.owner(), aliceName, 1<<30); err != nil {
		t.Fatal(err)
	}
	mustRun(t, a)
	st, _ := a.backups.Status(ctx)
	if d := st.Destinations[0]; d.Used == 0 || d.Quota != 1<<30 || d.LastOK.IsZero() {
		t.Fatalf("friend destination: %+v", d)
	}
	offers, _ := b.backups.Offers(ctx)
	if len(offers) != 1 || offers[0].Used == 0 {
		t.Fatalf("B's offers: %+v", offers)
	}
	filepath.Walk(b.cfg.DataDir, func(p string, fi os.FileInfo, err error) error {
		if fi != nil && fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			for _, s := range []string{"PLANTED-FRIEND-CONTENT", "PLANTED-FRIEND-TITLE"} {
				if strings.Contains(string(data), s) {
					t.Errorf("B's %s holds %q", p, s)
				}
			}
		}
		return nil
	})
	// Restore over the grain from the friend.
	a.get(origin + "/write?v=changed")
	if _, err := a.backups.RestoreGrain(ctx, a.owner(), erg.BackupRestoreRequest{Code: code, Grain: id, Over: true}); err != nil {
		t.Fatal(err)
	}
	if _, body := a.openAndGet(id, "/read"); body != "PLANTED-FRIEND-CONTENT" {
		t.Fatalf("restored from the friend: %q", body)
	}
	// Withdrawn: refused on A with B's reason; A's grain is untouched.
	if err := b.backups.WithdrawSpace(ctx, b.owner(), aliceName); err != nil {
		t.Fatal(err)
	}
	a.get(origin + "/write?v=after")
	run, err = a.backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Failed) == 0 || !strings.Contains(strings.Join(run.Failed, " "), "no backups for you") {
		t.Fatalf("after the offer was withdrawn: %v", run.Failed)
	}
	if _, body := a.openAndGet(id, "/read"); body != "after" {
		t.Fatalf("A's grain after a refused backup: %q", body)
	}
	// Offered again, then the friendship ends (A ends it): B ends the
	// offer and deletes what it kept; A's next run is refused.
	if err := b.backups.OfferSpace(ctx, b.owner(), aliceName, 1<<30); err != nil {
		t.Fatal(err)
	}
	mustRun(t, a)
	held := filepath.Join(b.cfg.DataDir, heldDir, a.p2p.host.ID().String())
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("B keeps nothing for A: %v", err)
	}
	if err := a.friends.Remove(ctx, a.owner(), bobName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B to forget A", func() bool { return !b.friends.IsFriend(a.p2p.host.ID()) })
	if offers, _ := b.backups.Offers(ctx); len(offers) != 0 {
		t.Fatalf("B's offers after the friendship ended: %+v", offers)
	}
	if _, err := os.Stat(held); !os.IsNotExist(err) {
		t.Fatalf("B still keeps A's backups after the friendship ended: %v", err)
	}
	run, err = a.backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Failed) == 0 {
		t.Fatal("a backup to a former friend succeeded")
	}
	t.Logf("a run to a former friend: %v", run.Failed)
}

// A new recovery code (the owner lost the old one, or fears it seen):
// backups from then on use the new keys; a destination holding the old
// code's backups is left as it is, refused with a message that says so,
// and still restores with the old code; a new destination takes the new
// code's backups, which the old code does not open.
func TestNewRecoveryCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	n.get(origin + "/write?v=under-the-old-code")
	oldCode, err := n.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	usb := filepath.Join(t.TempDir(), "usb")
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: usb}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, n)
	newCode, err := n.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newCode == oldCode {
		t.Fatal("the new code is the old one")
	}
	n.get(origin + "/write?v=under-the-new-code")
	run, err := n.backups.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg := strings.Join(run.Failed, " "); !strings.Contains(msg, "another recovery code") || !strings.Contains(msg, "another destination") {
		t.Fatalf("a run to the old code's destination: %v", run.Failed)
	}
	if _, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: newCode, Grain: id}); !errors.Is(err, erg.ErrForbidden) {
		t.Fatalf("the new code on the old code's backups: %v", err)
	}
	old, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: oldCode, Grain: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, body := n.openAndGet(old.Grain.ID, "/read"); body != "under-the-old-code" {
		t.Fatalf("restored with the old code: %q", body)
	}
	d, _ := n.backups.Status(ctx)
	for _, dest := range d.Destinations {
		n.backups.RemoveDestination(ctx, dest.ID)
	}
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: filepath.Join(t.TempDir(), "usb2")}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, n)
	got, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: newCode, Grain: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, body := n.openAndGet(got.Grain.ID, "/read"); body != "under-the-new-code" {
		t.Fatalf("restored with the new code: %q", body)
	}
	if _, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: oldCode, Grain: id}); !errors.Is(err, erg.ErrForbidden) {
		t.Fatalf("the old code on the new code's backups: %v", err)
	}
}

// Backups failing for more than a day put a warning on the owner's main
// pages; failing for less, they do not, and a run that works again ends
// it.
func TestBackupsFailingForADayWarn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, nil)
	owner := n.setUp(t)
	n.newGrain("echo")
	if _, err := n.backups.NewCode(ctx); err != nil {
		t.Fatal(err)
	}
	usb := filepath.Join(t.TempDir(), "usb")
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: usb}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, n)
	warned := func() bool {
		t.Helper()
		_, page := owner.get("/grains")
		return strings.Contains(page, `data-testid="backup-warning"`)
	}
	if w := n.backups.Warning(ctx); w != "" || warned() {
		t.Fatalf("a warning after a backup that worked: %q", w)
	}
	// The disk goes: runs fail, for less than a day.
	if err := os.Rename(usb, usb+".gone"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(usb, []byte("not a directory"), 0o600)
	if run, err := n.backups.Run(ctx); err != nil || len(run.Failed) == 0 {
		t.Fatalf("a run to a lost disk: %+v %v", run, err)
	}
	if w := n.backups.Warning(ctx); w != "" || warned() {
		t.Fatalf("a warning after failing for less than a day: %q", w)
	}
	// A day and an hour later.
	if _, err := n.db.ExecContext(ctx, `UPDATE backup_status SET failing_since = ? WHERE failing_since > 0`, time.Now().Add(-25*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	if w := n.backups.Warning(ctx); !strings.Contains(w, "failing since") {
		t.Fatalf("the warning after failing for a day: %q", w)
	}
	if !warned() {
		t.Fatal("the grains page does not warn after backups failed for a day")
	}
	// The disk comes back: the next run ends the warning.
	os.Remove(usb)
	if err := os.Rename(usb+".gone", usb); err != nil {
		t.Fatal(err)
	}
	mustRun(t, n)
	if w := n.backups.Warning(ctx); w != "" || warned() {
		t.Fatalf("a warning after backups work again: %q", w)
	}
}

// A grain restored from a backup snapshot is checked against the disk
// bounds before anything is written: as a new grain it counts in full
// against its owner's bound, over itself only what it adds.
func TestSnapshotRestoresAreBoundedUpFront(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, func(c *Config) { c.GrainDisk.UserMB = 40 })
	big := bytes.Repeat([]byte("erg"), 5<<20) // 15 MiB
	a, _ := n.newGrain("echo")
	b, _ := n.newGrain("echo")
	for _, id := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(n.grains.Dir(id), "var", "big"), big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, err := n.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: filepath.Join(t.TempDir(), "usb")}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, n)
	for _, id := range []string{a, b} {
		used, bound, enforced, _ := n.grains.DiskUse(id)
		t.Logf("grain %s keeps %d KiB of %d MiB (kernel-bound: %v)", id, used>>10, bound>>20, enforced)
	}

	count := n.grains.Count()
	_, err = n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: code, Grain: a})
	if !errors.Is(err, erg.ErrTooLarge) || !strings.Contains(err.Error(), "together") {
		t.Fatalf("a 15 MiB restore beside 30 MiB under a 40 MiB bound: %v", err)
	}
	if n.grains.Count() != count {
		t.Fatalf("the refused restore left a grain: %d grains, were %d", n.grains.Count(), count)
	}
	if _, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: code, Grain: a, Over: true}); err != nil {
		t.Fatalf("a restore over the grain itself, adding nothing: %v", err)
	}
}
