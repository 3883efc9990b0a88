package node

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg"
)

// A grain whose app writes records without pause while it is backed up
// restores, from every snapshot, to a state the app itself wrote: each
// record rewrites a 1 MiB file in place, then a counter; a copy of a
// grain not frozen for it shows a file of mixed records or a counter
// that does not match (the echo app's /churn checks both).
func TestBackupOfAGrainWritingIsConsistent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	churned := func(where string, body string) int {
		t.Helper()
		v, ok := strings.CutPrefix(body, "ok ")
		c, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("%s: the app's records read %q", where, body)
		}
		return c
	}
	n.get(origin + "/churn")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := n.get(origin + "/churn/state")
		if body != "none" && churned("before", body) >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app wrote too little: %q", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, err := n.backups.NewCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.backups.AddDestination(ctx, erg.BackupDestinationRequest{Dir: filepath.Join(t.TempDir(), "usb")}); err != nil {
		t.Fatal(err)
	}
	// Each run's snapshot is restored as a new grain before the next
	// (retention keeps only the last few).
	prev := 0
	for i := range 5 {
		mustRun(t, n)
		_, body := n.get(origin + "/churn/state")
		upTo := churned("after a run", body)
		got, err := n.backups.RestoreGrain(ctx, n.owner(), erg.BackupRestoreRequest{Code: code, Grain: id})
		if err != nil {
			t.Fatal(err)
		}
		_, body = n.openAndGet(got.Grain.ID, "/churn/state")
		c := churned("restored "+got.Snapshot, body)
		if c <= prev || c > upTo || c < 10 {
			t.Fatalf("snapshot %d restored record %d: want more than %d (and 10), at most %d", i, c, prev, upTo)
		}
		t.Logf("snapshot %d: record %d (the app was at %d after the run)", i, c, upTo)
		prev = c
		if err := n.grains.RemoveGrain(ctx, n.owner(), got.Grain.ID); err != nil {
			t.Fatal(err)
		}
	}
	if !n.grains.Running(id) {
		t.Fatal("the grain stopped: it was to be backed up while running")
	}
}
