package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"erg/apps/internal/appkit/appkittest"
)

// A user is the identity the node's proxy would assert for a request.
type user = appkittest.User

var (
	alice  = user{Name: "alice", Permissions: "read,write"}
	viewer = user{Name: "vera", Permissions: "read"}
	nobody = user{Name: "mallory", Permissions: ""}
)

// client does not follow redirects, so tests see the 303 after an upload.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// startServer serves the drop box in dir, as the node would reach it.
func startServer(t *testing.T, dir string, maxBytes int64) *httptest.Server {
	t.Helper()
	d, err := openDrop(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.close() })
	ts := httptest.NewServer(newApp(d, maxBytes, slog.New(slog.DiscardHandler)).handler())
	t.Cleanup(ts.Close)
	return ts
}

// do makes a request as u and returns the response with its body read.
func do(t *testing.T, u user, method, url, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = u.Header()
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// A part is one file in an upload. Its name goes into the part's
// Content-Disposition as is, unless disposition is set.
type part struct {
	name        string
	disposition string
	body        io.Reader
}

// form streams parts as a multipart form, as a browser would send them.
func form(parts ...part) (contentType string, body io.Reader) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range parts {
			h := textproto.MIMEHeader{}
			d := p.disposition
			if d == "" {
				d = fmt.Sprintf(`form-data; name="file"; filename="%s"`, p.name)
			}
			h.Set("Content-Disposition", d)
			h.Set("Content-Type", "application/octet-stream")
			w, err := mw.CreatePart(h)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(w, p.body); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return mw.FormDataContentType(), pr
}

func send(t *testing.T, ts *httptest.Server, u user, want int, parts ...part) []byte {
	t.Helper()
	ct, body := form(parts...)
	resp, b := do(t, u, "POST", ts.URL+"/upload", ct, body)
	if resp.StatusCode != want {
		t.Fatalf("upload as %s: status %d, want %d: %s", u.Name, resp.StatusCode, want, b)
	}
	return b
}

func download(t *testing.T, ts *httptest.Server, u user, name string) (*http.Response, []byte) {
	t.Helper()
	return do(t, u, "GET", ts.URL+"/files/"+url.PathEscape(name), "", nil)
}

func text(name, s string) part { return part{name: name, body: strings.NewReader(s)} }

// dataFiles lists everything in the data directory, so tests can tell that
// nothing was left behind.
func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel != "." {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	_, page := do(t, alice, "GET", ts.URL+"/", "", nil)
	if !strings.Contains(string(page), `data-testid="empty"`) || !strings.Contains(string(page), `enctype="multipart/form-data"`) {
		t.Errorf("empty drop box page:\n%s", page)
	}

	const evil = `<html><script>alert(document.cookie)</script></html>`
	ct, body := form(text("notes.txt", "hello"), text("évil page?.html", evil))
	resp, b := do(t, alice, "POST", ts.URL+"/upload", ct, body)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("upload: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), b)
	}

	_, page = do(t, viewer, "GET", ts.URL+"/", "", nil)
	for _, want := range []string{`href="files/notes.txt"`, `href="files/%c3%a9vil%20page%3f.html"`, "5 B", "Download only"} {
		if !strings.Contains(strings.ToLower(string(page)), strings.ToLower(want)) {
			t.Errorf("page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(string(page), "upload-form") || strings.Contains(string(page), "file-delete") {
		t.Errorf("viewer's page offers uploads or deletes")
	}

	resp, got := download(t, ts, viewer, "notes.txt")
	if resp.StatusCode != http.StatusOK || string(got) != "hello" {
		t.Fatalf("download: %d %q", resp.StatusCode, got)
	}
	resp, got = download(t, ts, viewer, "évil page?.html")
	if resp.StatusCode != http.StatusOK || string(got) != evil {
		t.Fatalf("download html: %d %q", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("uploaded HTML served as %q", ct)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("no nosniff")
	}
	disp, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if err != nil || disp != "attachment" || params["filename"] != "évil page?.html" {
		t.Errorf("Content-Disposition %q: %v %v", resp.Header.Get("Content-Disposition"), params, err)
	}

	// Re-uploading replaces; deleting removes.
	send(t, ts, alice, http.StatusSeeOther, text("notes.txt", "hello again"))
	if _, got := download(t, ts, alice, "notes.txt"); string(got) != "hello again" {
		t.Errorf("after replace: %q", got)
	}
	resp, _ = do(t, alice, "POST", ts.URL+"/files/"+url.PathEscape("évil page?.html")+"/delete", "", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if resp, _ := download(t, ts, alice, "évil page?.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted file: %d", resp.StatusCode)
	}
	if resp, _ := do(t, alice, "POST", ts.URL+"/files/gone/delete", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("delete missing file: %d", resp.StatusCode)
	}
	if got, want := dataFiles(t, dir), []string{"files", "files/notes.txt"}; !slices.Equal(got, want) {
		t.Errorf("data dir holds %v, want %v", got, want)
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	send(t, ts, alice, http.StatusSeeOther, text("kept.txt", "still here"))
	ts.Close()

	ts = startServer(t, dir, 1<<20)
	if resp, got := download(t, ts, viewer, "kept.txt"); resp.StatusCode != http.StatusOK || string(got) != "still here" {
		t.Errorf("after restart: %d %q", resp.StatusCode, got)
	}
}

// TestLargeUpload streams 20 MiB up and down and checks that it arrives
// intact without the server holding it in memory.
func TestLargeUpload(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 100<<20)
	const size = 20 << 20
	up := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), up)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	send(t, ts, alice, http.StatusSeeOther, part{name: "big.bin", body: src})
	runtime.ReadMemStats(&after)
	// Client and server share this process; streaming both ends uses a
	// few buffers, where buffering the file would allocate all of it.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("uploading %d bytes allocated %d", size, alloc)
	if alloc > size/2 {
		t.Errorf("uploading %d bytes allocated %d", size, alloc)
	}

	req, err := http.NewRequest("GET", ts.URL+"/files/big.bin", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = viewer.Header()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	down := sha256.New()
	n, err := io.Copy(down, resp.Body)
	if err != nil || n != size || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: status %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	if !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Error("downloaded file differs from the upload")
	}
	if resp.ContentLength != size {
		t.Errorf("Content-Length %d", resp.ContentLength)
	}
}

func TestOverLimitLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	const limit = 1 << 20
	ts := startServer(t, dir, limit)
	zeros := func(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

	// Streamed without a length: refused once the limit is passed. The
	// server may close the connection before the client has sent it all,
	// so a failed request is refusal too.
	ct, body := form(part{name: "big.bin", body: zeros(3 * limit)})
	req, _ := http.NewRequest("POST", ts.URL+"/upload", body)
	req.Header = alice.Header()
	req.Header.Set("Content-Type", ct)
	if resp, err := client.Do(req); err != nil {
		t.Logf("streamed over-limit upload: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("streamed over-limit upload: %d", resp.StatusCode)
		}
	}
	// Within the body limit but over the file limit: a clear 413.
	send(t, ts, alice, http.StatusRequestEntityTooLarge, part{name: "just-over.bin", body: zeros(limit + 1)})
	// The limit holds for the files together, and none of them is kept.
	send(t, ts, alice, http.StatusRequestEntityTooLarge,
		part{name: "a.bin", body: zeros(limit / 2)}, part{name: "b.bin", body: zeros(limit/2 + 1)})
	// A declared length over the limit is refused before reading.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "declared.bin")
	w.Write(make([]byte, limit+formOverhead))
	mw.Close()
	resp, _ := do(t, alice, "POST", ts.URL+"/upload", mw.FormDataContentType(), &buf)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("declared over-limit upload: %d", resp.StatusCode)
	}

	if got := dataFiles(t, dir); !slices.Equal(got, []string{"files"}) {
		t.Errorf("refused uploads left %v", got)
	}
	// Exactly at the limit is fine.
	send(t, ts, alice, http.StatusSeeOther, part{name: "exact.bin", body: zeros(limit)})
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestBadNamesRefused(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	for _, p := range []part{
		text("../escape.txt", "x"),
		text("../../etc/passwd", "x"),
		text("..", "x"),
		text(".", "x"),
		text("a/b.txt", "x"),
		text(`dir\b.txt`, "x"),
		text("x..y", "x"),
		text(strings.Repeat("n", maxName+1), "x"),
		{disposition: `form-data; name="file"; filename*=UTF-8''nul%00byte.txt`, body: strings.NewReader("x")},
		{disposition: `form-data; name="file"; filename*=UTF-8''bell%07.txt`, body: strings.NewReader("x")},
		{disposition: `form-data; name="file"; filename*=UTF-8''new%0Aline.txt`, body: strings.NewReader("x")},
		{disposition: `form-data; name="file"; filename*=UTF-8''slash%2Fx.txt`, body: strings.NewReader("x")},
		{disposition: `form-data; name="file"; filename*=UTF-8''bad%FFutf8.txt`, body: strings.NewReader("x")},
	} {
		ct, body := form(p)
		resp, b := do(t, alice, "POST", ts.URL+"/upload", ct, body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("upload %q %q: status %d, want 400: %.200s", p.name, p.disposition, resp.StatusCode, b)
		}
	}
	// A good file with a bad one: neither is kept.
	send(t, ts, alice, http.StatusBadRequest, text("good.txt", "x"), text("../bad.txt", "x"))
	if got := dataFiles(t, dir); !slices.Equal(got, []string{"files"}) {
		t.Errorf("refused uploads left %v", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.txt")); err == nil {
		t.Error("upload escaped the data directory")
	}
	// 255 bytes is allowed.
	send(t, ts, alice, http.StatusSeeOther, text(strings.Repeat("n", maxName), "x"))
}

func TestDownloadStaysInside(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(dir, filesDir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, filesDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/files/..%2Fsecret", "/files/%2E%2E%2Fsecret", "/files/../secret", "/files/%2e%2e",
		"/files/link", "/files/sub", "/files/", "/files/x..y",
	} {
		resp, b := do(t, alice, "GET", ts.URL+path, "", nil)
		if resp.StatusCode == http.StatusOK && !strings.Contains(resp.Header.Get("Content-Type"), "html") || bytes.Contains(b, []byte("SECRET")) {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, b)
		}
		// The mux may redirect to a cleaned path; it must not delete.
		if resp, _ := do(t, alice, "POST", ts.URL+path+"/delete", "", nil); resp.StatusCode == http.StatusSeeOther {
			t.Errorf("POST %s/delete: %d", path, resp.StatusCode)
		}
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("secret: %v", err)
	}
	for _, name := range []string{"link", "sub"} {
		if _, err := os.Lstat(filepath.Join(dir, filesDir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPermissions(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	send(t, ts, alice, http.StatusSeeOther, text("a.txt", "x"))

	for _, u := range []user{nobody, {}} {
		for _, path := range []string{"/", "/files/a.txt"} {
			resp, b := do(t, u, "GET", ts.URL+path, "", nil)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(b), "a.txt") {
				t.Errorf("GET %s as %q: %d", path, u.Name, resp.StatusCode)
			}
		}
		send(t, ts, u, http.StatusForbidden, text("b.txt", "x"))
	}
	send(t, ts, viewer, http.StatusForbidden, text("b.txt", "x"))
	if resp, _ := do(t, viewer, "POST", ts.URL+"/files/a.txt/delete", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer delete: %d", resp.StatusCode)
	}
	if resp, got := download(t, ts, viewer, "a.txt"); resp.StatusCode != http.StatusOK || string(got) != "x" {
		t.Errorf("viewer download: %d %q", resp.StatusCode, got)
	}
	// Anonymous visitors with read permission may download.
	if resp, _ := download(t, ts, user{Name: "", Permissions: "read"}, "a.txt"); resp.StatusCode != http.StatusOK {
		t.Errorf("anonymous download: %d", resp.StatusCode)
	}
	if got := dataFiles(t, dir); !slices.Equal(got, []string{"files", "files/a.txt"}) {
		t.Errorf("data dir holds %v", got)
	}
}

func TestBadUploads(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	for _, r := range []struct{ ct, body string }{
		{"application/json", `{"name":"x"}`},
		{"", "raw"},
		{"multipart/form-data", "no boundary"},
		{"multipart/form-data; boundary=xyz", "--xyz\r\nbroken"},
	} {
		resp, b := do(t, alice, "POST", ts.URL+"/upload", r.ct, strings.NewReader(r.body))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("upload %q %q: %d %.200s", r.ct, r.body, resp.StatusCode, b)
		}
	}
	// A form with no file chosen, as a browser sends it.
	send(t, ts, alice, http.StatusBadRequest, part{disposition: `form-data; name="file"; filename=""`, body: strings.NewReader("")})
	send(t, ts, alice, http.StatusBadRequest, part{disposition: `form-data; name="note"`, body: strings.NewReader("hi")})
	// The same name twice in one upload.
	send(t, ts, alice, http.StatusBadRequest, text("a", "1"), text("a", "2"))
	if got := dataFiles(t, dir); !slices.Equal(got, []string{"files"}) {
		t.Errorf("bad uploads left %v", got)
	}
}

func TestOpenRemovesUnfinishedUpload(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := openDrop(dir)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if got := dataFiles(t, dir); !slices.Equal(got, []string{"files"}) {
		t.Errorf("after open: %v", got)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 100 << 20: "100 MiB", 5 << 30: "5 GiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCrossSiteFormPostsAreRefused(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, 1<<20)
	os.WriteFile(filepath.Join(dir, "files", "keep.txt"), []byte("keep"), 0o600)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		req, _ := http.NewRequest("POST", ts.URL+"/files/keep.txt/delete", nil)
		req.Header = alice.Header()
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("delete with %v: %s, want 403", h, resp.Status)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "files", "keep.txt")); err != nil {
		t.Errorf("a cross-site delete removed the file: %v", err)
	}
	req, _ := http.NewRequest("POST", ts.URL+"/files/keep.txt/delete", nil)
	req.Header = alice.Header()
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin delete: %s, want 303", resp.Status)
	}
}
