package nodetest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/backup"
	"erg/nodetest"
)

// TestBackupKilledMidwayLeavesNoBackup kills an erg process with SIGKILL
// while it backs up a large grain: what it left is not taken for a
// backup, and the next run after a restart completes and restores.
func TestBackupKilledMidwayLeavesNoBackup(t *testing.T) {
	nodetest.SkipShort(t, "an erg process killed mid-backup")
	t.Parallel()
	ctx := context.Background()
	env := nodetest.New(t)
	a := env.Process("knode")
	var g erg.Grain
	json.Unmarshal([]byte(a.CLI("grain", "new", "echo", "--title", "big", "--json")), &g)
	big := make([]byte, 64<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(big); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			big[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(a.DataDir, "grains", g.ID, "var", "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	var rc erg.RecoveryCode
	json.Unmarshal([]byte(a.CLI("backup", "code", "--json")), &rc)
	repo := filepath.Join(t.TempDir(), "usb")
	a.CLI("backup", "dest", "add", repo)

	run := exec.Command(nodetest.ErgBinary(t), "--data", a.DataDir, "backup", "now")
	var runOut bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { run.Wait(); close(exited) }()
	nodetest.AwaitFor(t, 5*time.Minute, "the backup to start on a source", func() bool {
		select {
		case <-exited:
			// Said at once: a run that ended (or never began) before the
			// kill can't show what a kill leaves.
			t.Fatalf("erg backup now ended before it could be killed: %s", runOut.String())
		default:
		}
		st, err := a.Client().BackupStatus(ctx)
		return err == nil && st.Running && strings.Contains(st.Progress, " of 2")
	})
	time.Sleep(300 * time.Millisecond) // well into its chunks
	a.Kill()
	<-exited
	if strings.Contains(runOut.String(), "backed up") {
		t.Fatalf("the run finished before the kill: %s", runOut.String())
	}
	keys, err := backup.DeriveKeys(rc.Code)
	if err != nil {
		t.Fatal(err)
	}
	d, err := backup.OpenDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever snapshot is there is whole: its header opens and every
	// chunk it names is stored. The one being made when the node died is
	// not there.
	hs, bad, err := backup.Headers(ctx, d, &keys.NodeKeys)
	if err != nil || len(bad) > 0 {
		t.Fatalf("headers after the kill: %v %v", err, bad)
	}
	if len(hs) >= 2 {
		t.Fatalf("a killed run left snapshots of both sources: %+v", hs)
	}
	chunks, _ := d.List(ctx, backup.KindChunks)
	stored := map[string]bool{}
	for _, c := range chunks {
		stored[c.Name] = true
	}
	for _, h := range hs {
		for _, ref := range h.Refs {
			if !stored[ref] {
				t.Fatalf("snapshot %s names chunk %s, which is not stored", h.Name, ref)
			}
		}
	}

	a.Restart()
	if out := a.CLI("backup", "now"); !strings.Contains(out, "backed up 2 sources") {
		t.Fatalf("the run after the restart: %s", out)
	}
	restore := exec.Command(nodetest.ErgBinary(t), "--data", a.DataDir, "backup", "restore", g.ID, "--json")
	restore.Stdin = strings.NewReader(rc.Code + "\n")
	out, err := restore.Output()
	if err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	var res erg.BackupRestored
	json.Unmarshal(out, &res)
	got, err := os.ReadFile(filepath.Join(a.DataDir, "grains", res.Grain.ID, "var", "big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the restored big file differs (%v)", err)
	}
}
