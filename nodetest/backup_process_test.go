package nodetest_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"erg"
	"erg/nodetest"
)

// TestBackupToFriendsAndRestoreFromOne runs three nodes as processes. A
// backs up to B, C and a directory; A's data dir is deleted; a new A is
// restored from its recovery code and B alone (C is offline), and the
// shares to B and C work again without anyone inviting anyone. Nothing B
// keeps holds A's grain contents, nor the title of a grain not shared
// with it (a shared one's title B's user sees, by design).
func TestBackupToFriendsAndRestoreFromOne(t *testing.T) {
	nodetest.SkipShort(t, "three erg processes")
	t.Parallel()
	env := nodetest.New(t)
	tcp := nodetest.P2PListen("/ip4/127.0.0.1/tcp/0")
	a := env.Process("anode", tcp)
	boot := nodetest.Bootstrap(a.Status().P2PAddrs[:1]...)
	b := env.Process("bnode", nodetest.Owner("bob"), tcp, boot)
	c := env.Process("cnode", nodetest.Owner("carol"), tcp, boot)
	env.Befriend(a, b)
	env.Befriend(a, c)

	const note, title, privNote = "PLANTED-NOTE-7f3a9c", "PLANTED-TITLE-b81e", "PLANTED-PRIVATE-55d0"
	var g, priv erg.Grain
	json.Unmarshal([]byte(a.CLI("grain", "new", "notes", "--title", "Plans", "--json")), &g)
	if code, body := putNote(a.Open(g), note, 0); code != 200 {
		t.Fatalf("write the note: %d %s", code, body)
	}
	json.Unmarshal([]byte(a.CLI("grain", "new", "notes", "--title", title, "--json")), &priv)
	if code, body := putNote(a.Open(priv), privNote, 0); code != 200 {
		t.Fatalf("write the private note: %d %s", code, body)
	}
	a.ShareWith(g, b, "editor")
	a.ShareWith(g, c, "viewer")
	if _, body := b.Open(g).Get("/api/note"); !strings.Contains(body, note) {
		t.Fatalf("bob reads before: %s", body)
	}

	// The friends offer space; A backs up to both and to a directory.
	if out := b.CLI("backup", "offer", "anode", "1"); out != "" {
		t.Logf("offer: %s", out)
	}
	c.CLI("backup", "offer", "anode", "1")
	var rc erg.RecoveryCode
	json.Unmarshal([]byte(a.CLI("backup", "code", "--json")), &rc)
	usb := filepath.Join(t.TempDir(), "usb")
	a.CLI("backup", "dest", "add", usb)
	a.CLI("backup", "dest", "add", "--friend", "bnode")
	a.CLI("backup", "dest", "add", "--friend", "cnode")
	if out := a.CLI("backup", "now"); !strings.Contains(out, "backed up") {
		t.Fatalf("backup now: %s", out)
	}
	var st erg.BackupStatus
	json.Unmarshal([]byte(a.CLI("backup", "status", "--json")), &st)
	if len(st.Destinations) != 3 {
		t.Fatalf("destinations: %+v", st.Destinations)
	}
	for _, d := range st.Destinations {
		if d.LastOK.IsZero() || d.Error != "" {
			t.Fatalf("destination %s: %+v", d.Name, d)
		}
	}
	if out := b.CLI("backup", "offer"); !strings.Contains(out, "anode") {
		t.Errorf("bnode's offers:\n%s", out)
	}
	filepath.Walk(b.DataDir, func(p string, fi os.FileInfo, err error) error {
		if fi != nil && fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			for _, s := range []string{note, title, privNote} {
				if strings.Contains(string(data), s) {
					t.Errorf("bnode's %s holds %q", p, s)
				}
			}
		}
		return nil
	})

	// A is lost; C is offline. A comes back from the code and B alone.
	invite := strings.TrimSpace(lastLine(b.CLI("friend", "invite")))
	a.Kill()
	c.Stop()
	a.Wipe()
	cmd := exec.Command(nodetest.ErgBinary(t), "--data", a.DataDir, "restore", "--friend", invite)
	cmd.Env = append(os.Environ(), "ERG_RECOVERY_CODE="+rc.Code)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("erg restore: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "with 2 grains") || !strings.Contains(string(out), "Restoring grain") || !strings.Contains(string(out), " files, ") {
		t.Errorf("erg restore said (its progress, then what it did):\n%s", out)
	}
	a.Restart()
	c.Restart()
	if _, body := a.Open(g).Get("/api/note"); !strings.Contains(body, note) {
		t.Fatalf("the restored grain reads: %s", body)
	}
	if _, body := a.Open(priv).Get("/api/note"); !strings.Contains(body, privNote) {
		t.Fatalf("the restored private grain reads: %s", body)
	}
	nodetest.Await(t, "anode to see bnode and cnode online", func() bool { return a.FriendOnline("bnode") && a.FriendOnline("cnode") })
	if code, body := putNote(b.Open(g), "bob again", 1); code != 200 {
		t.Fatalf("bob edits the restored grain: %d %s", code, body)
	}
	if _, body := c.Open(g).Get("/api/note"); !strings.Contains(body, "bob again") {
		t.Fatalf("carol reads the restored grain: %s", body)
	}
}
