package node

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
)

func TestOversizedUploadsAreRefusedWithoutFillingTheDisk(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.MaxUpload = 1 << 20 })
	alice := n.setUp(t)
	tmp := filepath.Join(n.cfg.DataDir, "tmp")
	// Each body sends 32 MiB and then stalls until the test ends: a node
	// that read on past its limit would never answer.
	stall := make(chan struct{})
	defer close(stall)
	send := func(path string, declared bool) (int, string) {
		t.Helper()
		body := &stallingReader{left: 32 << 20, stall: stall}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", n.URL()+path, body)
		req.ContentLength = -1
		if declared {
			req.ContentLength = 64 << 20
		}
		req.Header.Set("X-CSRF-Token", alice.csrf)
		code, msg, _ := alice.do(req)
		return code, msg
	}
	if code, msg := send("/api/apps", true); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "limit is 1 MiB") {
		t.Errorf("64 MiB declared: %d %s, want 413", code, msg)
	}
	for _, path := range []string{"/api/apps", "/api/grains/restore"} {
		if code, msg := send(path, false); code != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s streaming past the limit: %d %s, want 413", path, code, msg)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("POST %s left %d files in %s", path, len(left), tmp)
		}
	}
	// The page form too.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", alice.csrf)
	fw, _ := mw.CreateFormFile("package", "big.erg")
	fw.Write(make([]byte, 2<<20))
	mw.Close()
	req, _ := http.NewRequest("POST", n.URL()+"/apps", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if code, _, _ := alice.do(req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("the upload form with 2 MiB: %d, want 413", code)
	}
	if apps, _ := n.installer.Apps(context.Background()); len(apps) != 5 {
		t.Errorf("%d apps after refused uploads", len(apps))
	}
}

// stallingReader gives left zero bytes, then blocks until stall closes.
type stallingReader struct {
	left  int
	stall chan struct{}
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		<-r.stall
		return 0, io.EOF
	}
	k := min(len(p), r.left)
	clear(p[:k])
	r.left -= k
	return k, nil
}

func TestRestoreReadsBackupsSafely(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	owner := n.owner()
	meta := `{"format":1,"appId":"echo","appName":"Echo","appVersion":1,"title":"restored"}`
	type entry struct {
		name string
		body string
		mode os.FileMode
	}
	zipOf := func(entries ...entry) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, e := range entries {
			h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
			if e.mode != 0 {
				h.SetMode(e.mode)
			}
			w, err := zw.CreateHeader(h)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, e.body)
		}
		zw.Close()
		return buf.Bytes()
	}
	m := entry{name: "erg-backup.json", body: meta}
	grainsBefore, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, grainsDir))
	n.grains.SetRestoreLimit(1 << 20)
	for _, c := range []struct {
		name string
		zip  []byte
	}{
		{"not a zip", []byte("hello")},
		{"no metadata", zipOf(entry{name: "data/x", body: "x"})},
		{"dot-dot", zipOf(m, entry{name: "data/../escaped", body: "x"})},
		{"deep dot-dot", zipOf(m, entry{name: "data/a/../../escaped", body: "x"})},
		{"absolute", zipOf(m, entry{name: "data//etc/passwd", body: "x"})},
		{"backslash", zipOf(m, entry{name: `data/a\..\..\escaped`, body: "x"})},
		{"outside data/", zipOf(m, entry{name: "other/x", body: "x"})},
		{"a symlink", zipOf(m, entry{name: "data/link", body: "/etc/passwd", mode: os.ModeSymlink | 0o777})},
		{"a device", zipOf(m, entry{name: "data/dev", mode: os.ModeDevice | 0o666})},
		{"unknown app", zipOf(entry{name: "erg-backup.json", body: strings.Replace(meta, `"echo"`, `"nosuchapp"`, 1)})},
		{"a newer app version", zipOf(entry{name: "erg-backup.json", body: strings.Replace(meta, `"appVersion":1`, `"appVersion":9`, 1)})},
		{"a zip bomb", zipOf(m, entry{name: "data/big", body: strings.Repeat("0", 3<<20)})},
	} {
		_, err := n.grains.Restore(ctx, owner, bytes.NewReader(c.zip))
		if !errors.Is(err, erg.ErrInvalid) {
			t.Errorf("%s: %v, want an invalid-backup error", c.name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, grainsDir, "escaped")); err == nil {
		t.Error("a backup wrote outside its grain")
	}
	if after, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, grainsDir)); len(after) != len(grainsBefore) {
		t.Errorf("refused restores left %d grain dirs", len(after)-len(grainsBefore))
	}
	if gs, _ := n.Grains(ctx, owner); len(gs) != 0 {
		t.Errorf("refused restores made grains: %v", gs)
	}
	if left, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, "tmp")); len(left) != 0 {
		t.Errorf("refused restores left %d temp files", len(left))
	}

	// A grain's symlink to a host file is not followed into a backup.
	id, origin := n.newGrain("echo")
	if code, body := n.get(origin + "/write?v=kept"); code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	os.Symlink("/etc/passwd", filepath.Join(n.grains.Dir(id), "var", "planted"))
	var buf bytes.Buffer
	if err := n.grains.Backup(ctx, owner, id, &buf); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.Contains(f.Name, "planted") {
			t.Errorf("the backup holds the grain's symlink %s", f.Name)
		}
	}
	g, err := n.grains.Restore(ctx, owner, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	open, _ := n.OpenGrain(ctx, owner, g.ID)
	n.get(open.URL)
	if code, body := n.get(n.grainOrigin(g.ID) + "/read"); code != 200 || body != "kept" {
		t.Errorf("the restored grain reads %d %q", code, body)
	}
}
