package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
)

// updatePynotesEnv, set to 1, makes TestPythonAppPortedFromTrace write the
// list it traced to apps/pynotes/erg-files.list (the committed list).
const updatePynotesEnv = "ERG_UPDATE_PYNOTES_LIST"

// TestPythonAppPortedFromTrace ports a Python web app the way an author
// would: `erg app dev` runs apps/pynotes with the host's python3 while the
// test clicks through it, the traced file list packs the interpreter and
// the stdlib modules it used into a signed package, and that package runs
// in a grain with no host dirs: a note written through the node's proxy
// reads back, and a viewer without write is refused.
func TestPythonAppPortedFromTrace(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3 on this machine: the Python porting example needs the host's python3")
	}
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	dir := pynotesCopy(t, appID, "editor")

	// 1. Trace a session of clicking through the app.
	list := traceSession(t, dir, func(url string) {
		c := &http.Client{Timeout: 10 * time.Second}
		mustDo(t, c, "GET", url, "", 200, "No notes yet.")
		mustDo(t, c, "PUT", url+"notes/first", `{"title":"First","body":"traced"}`, 200, `"author": "owner"`)
		mustDo(t, c, "GET", url+"notes", "", 200, `"name": "first"`)
		mustDo(t, c, "GET", url+"notes/first", "", 200, `"body": "traced"`)
		mustDo(t, c, "POST", url+"notes", "title=Second&body=from+a+form", 200, "Second") // 303 followed to /
		mustDo(t, c, "DELETE", url+"notes/first", "", 200, "deleted")
		mustDo(t, c, "GET", url+"notes/nope", "", 404, "no such note")
	})
	for _, want := range []string{"/usr/bin/python3", "/http/server.py", "/json/__init__.py", "/urllib/parse.py", "/html/__init__.py", "/encodings/utf_8.py"} {
		if !slices.ContainsFunc(list, func(p string) bool { return p == want || strings.HasSuffix(p, want) }) {
			t.Errorf("the traced list lacks %s:\n%s", want, strings.Join(list, "\n"))
		}
	}
	for _, p := range list {
		if !regexp.MustCompile(`^/(usr|lib|lib64|bin|sbin|etc)(/|$)`).MatchString(p) {
			t.Errorf("the list has %s, outside the host dirs", p)
		}
	}
	// A second session, as a viewer: the dev proxy gives the role's
	// permissions whatever the browser claims, and the list only grows.
	list2 := traceSession(t, dir, func(url string) {
		c := &http.Client{Timeout: 10 * time.Second}
		mustDo(t, c, "GET", url, "", 200, "Hello, bob")
		req, _ := http.NewRequest("PUT", url+"notes/x", strings.NewReader(`{"title":"x"}`))
		req.Header.Set("X-Erg-Permissions", "read,write")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("a viewer's PUT through erg app dev = %d, want 403", resp.StatusCode)
		}
	}, "--user", "bob", "--role", "viewer")
	for _, p := range list {
		if !slices.Contains(list2, p) {
			t.Errorf("the second session dropped %s from the list", p)
		}
	}
	if os.Getenv(updatePynotesEnv) == "1" {
		b, _ := os.ReadFile(filepath.Join(dir, apppkg.FilesListFile))
		if err := os.WriteFile(filepath.Join(repoRoot(t), "apps", "pynotes", apppkg.FilesListFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 2. Pack exactly that list (plus ELF deps) into signed packages: the
	// app as is, and the same app as a second app whose owner only views.
	editorPkg := packPynotes(t, dir, key)
	viewKey, _ := apppkg.GenerateKey()
	viewDir := pynotesCopy(t, apppkg.AppID(viewKey.Public().(ed25519.PublicKey)), "viewer")
	copyFileT(t, filepath.Join(dir, apppkg.FilesListFile), filepath.Join(viewDir, apppkg.FilesListFile), 0o644)
	viewerPkg := packPynotes(t, viewDir, viewKey)

	// 3. Run it in grains.
	n := startNode(t, nil)
	c := erg.NewClient(SocketPath(n.cfg.DataDir))
	app, err := c.InstallPackage(context.Background(), editorPkg)
	if err != nil {
		t.Fatal(err)
	}
	_, origin := n.newGrain(app.ID)
	grainDo := func(method, url, body string, hdr ...string) (int, string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := n.http.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := grainDo("GET", origin+"/", ""); code != 200 || !strings.Contains(body, "Hello, alice") {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, body := grainDo("PUT", origin+"/notes/kept", `{"title":"Kept","body":"in a grain"}`); code != 200 {
		t.Fatalf("PUT note = %d %q", code, body)
	}
	if code, body := grainDo("GET", origin+"/notes/kept", ""); code != 200 || !strings.Contains(body, `"body": "in a grain"`) || !strings.Contains(body, `"author": "alice"`) {
		t.Fatalf("GET note = %d %q", code, body)
	}

	app2, err := c.InstallPackage(context.Background(), viewerPkg)
	if err != nil {
		t.Fatal(err)
	}
	_, viewOrigin := n.newGrain(app2.ID)
	if code, body := grainDo("GET", viewOrigin+"/notes", ""); code != 200 || body != "[]" {
		t.Errorf("viewer GET /notes = %d %q", code, body)
	}
	// The proxy replaces what the browser claims with what the role grants.
	code, body := grainDo("PUT", viewOrigin+"/notes/nope", `{"title":"No"}`, "X-Erg-Permissions", "read,write")
	if code != 403 || !strings.Contains(body, "may not write") {
		t.Errorf("viewer PUT = %d %q, want 403", code, body)
	}
	if code, body := grainDo("GET", viewOrigin+"/notes/nope", ""); code != 404 {
		t.Errorf("after the refused PUT, GET = %d %q, want 404", code, body)
	}
}

// pynotesCopy copies apps/pynotes (without its committed list) into a new
// dir, with the manifest's id and owner role replaced.
func pynotesCopy(t *testing.T, appID, ownerRole string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pynotes")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// As root the app runs as another uid, which must reach the dir.
	for d := filepath.Dir(dir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	src := filepath.Join(repoRoot(t), "apps", "pynotes")
	copyFileT(t, filepath.Join(src, "app.py"), filepath.Join(dir, "app.py"), 0o644)
	m, err := apppkg.ReadManifest(src)
	if err != nil {
		t.Fatal(err)
	}
	m.ID, m.OwnerRole = appID, ownerRole
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, apppkg.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// traceSession runs `erg app dev dir`, calls click with the address it
// serves the app at, stops it as Ctrl-C would, and returns the list it
// wrote.
func traceSession(t *testing.T, dir string, click func(url string), args ...string) []string {
	t.Helper()
	cmd := exec.Command(ergBinary(t), append([]string{"app", "dev", dir, "--listen", "127.0.0.1:0"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	url := ""
	timeout := time.After(30 * time.Second)
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("erg app dev exited: %v", cmd.Wait())
			}
			t.Log("erg app dev:", l)
			if m := regexp.MustCompile(` at (http://\S+/) `).FindStringSubmatch(l); m != nil {
				url = m[1]
			}
		case <-timeout:
			t.Fatal("erg app dev printed no address in 30s")
		}
	}
	click(url)
	cmd.Process.Signal(syscall.SIGTERM)
	var out []string
	for l := range lines {
		t.Log("erg app dev:", l)
		out = append(out, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("erg app dev: %v", err)
	}
	if !slices.ContainsFunc(out, func(l string) bool { return strings.HasPrefix(l, "recorded ") }) {
		t.Errorf("erg app dev did not say what it recorded: %q", out)
	}
	list, err := apppkg.ReadFilesList(filepath.Join(dir, apppkg.FilesListFile))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func mustDo(t *testing.T, c *http.Client, method, url, body string, wantCode int, wantBody string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method == "POST" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode || !strings.Contains(string(b), wantBody) {
		t.Fatalf("%s %s = %d %q, want %d with %q", method, url, resp.StatusCode, b, wantCode, wantBody)
	}
}

// packPynotes packs dir the way `erg app pack` does.
func packPynotes(t *testing.T, dir string, key ed25519.PrivateKey) *bytes.Buffer {
	t.Helper()
	staged, cleanup, err := apppkg.PrepareTree(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if _, err := os.Lstat(filepath.Join(staged, apppkg.DevDir)); err == nil {
		t.Errorf("the package tree holds the dev sandbox's %s", apppkg.DevDir)
	}
	for _, p := range []string{"usr/bin/python3", "app.py"} {
		if _, err := os.Stat(filepath.Join(staged, p)); err != nil {
			t.Errorf("the package tree lacks %s: %v", p, err)
		}
	}
	var pkg bytes.Buffer
	if _, err := apppkg.Pack(context.Background(), staged, key, &pkg, apppkg.PackOptions{}); err != nil {
		t.Fatal(fmt.Errorf("pack: %w", err))
	}
	return &pkg
}
