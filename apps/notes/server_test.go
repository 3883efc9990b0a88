package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg/apps/internal/appkit/appkittest"
)

// A user is the identity the node's proxy would assert for a request.
type user = appkittest.User

var (
	alice  = user{Name: "alice", Permissions: "read,write"}
	bob    = user{Name: "bob", Permissions: "read,write"}
	viewer = user{Name: "vera", Permissions: "read"}
)

// startServer serves the note stored in dir, as the node would reach it.
func startServer(t *testing.T, dir string) (*httptest.Server, *app) {
	t.Helper()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(s, slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(a.handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.close(ctx); err != nil {
			t.Errorf("close sockets: %v", err)
		}
	})
	return ts, a
}

// do makes a request as u and returns the status and body.
func do(t *testing.T, u user, method, url string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = u.Header()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func getNote(t *testing.T, ts *httptest.Server, u user) note {
	t.Helper()
	status, b := do(t, u, "GET", ts.URL+"/api/note", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/note: %d %s", status, b)
	}
	return decode[note](t, b)
}

// putNote saves an edit as u and returns the status and the note in the reply.
func putNote(t *testing.T, ts *httptest.Server, u user, e edit) (int, note) {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	status, body := do(t, u, "PUT", ts.URL+"/api/note", bytes.NewReader(b))
	var n note
	if status == http.StatusOK || status == http.StatusConflict {
		n = decode[note](t, body)
	}
	return status, n
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestGetPutRoundTrip(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())

	if n := getNote(t, ts, alice); n.Version != 0 || n.Title != "" || n.Text != "" {
		t.Fatalf("new note = %+v, want empty version 0", n)
	}
	before := time.Now()
	status, saved := putNote(t, ts, alice, edit{Title: "Groceries", Text: "eggs\nmilk", BaseVersion: 0})
	if status != http.StatusOK {
		t.Fatalf("PUT: status %d", status)
	}
	if saved.Title != "Groceries" || saved.Text != "eggs\nmilk" || saved.Version != 1 || saved.UpdatedBy != "alice" {
		t.Errorf("PUT returned %+v", saved)
	}
	if saved.UpdatedAt.Before(before.Add(-time.Second)) || saved.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("updatedAt = %v, want about now", saved.UpdatedAt)
	}
	if got := getNote(t, ts, viewer); got != saved {
		t.Errorf("GET after PUT = %+v, want %+v", got, saved)
	}

	status, saved = putNote(t, ts, bob, edit{Title: "Groceries", Text: "eggs", BaseVersion: 1})
	if status != http.StatusOK || saved.Version != 2 || saved.UpdatedBy != "bob" {
		t.Errorf("second PUT: %d %+v", status, saved)
	}
}

func TestNoteSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts, _ := startServer(t, dir)
	_, saved := putNote(t, ts, alice, edit{Title: "Plan", Text: "step one", BaseVersion: 0})
	ts.Close()

	ts, _ = startServer(t, dir)
	if got := getNote(t, ts, alice); got != saved {
		t.Fatalf("after restart: %+v, want %+v", got, saved)
	}
	if status, n := putNote(t, ts, alice, edit{Title: "Plan", Text: "step two", BaseVersion: 1}); status != http.StatusOK || n.Version != 2 {
		t.Errorf("PUT after restart: %d %+v, want version 2", status, n)
	}
}

func TestStaleEditConflicts(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	_, first := putNote(t, ts, alice, edit{Title: "A", Text: "alice's", BaseVersion: 0})

	status, current := putNote(t, ts, bob, edit{Title: "B", Text: "bob's", BaseVersion: 0})
	if status != http.StatusConflict {
		t.Fatalf("stale PUT: status %d, want 409", status)
	}
	if current != first {
		t.Errorf("409 body = %+v, want the current note %+v", current, first)
	}
	if got := getNote(t, ts, alice); got != first {
		t.Errorf("stale PUT changed the note to %+v", got)
	}
}

func TestPermissions(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	_, saved := putNote(t, ts, alice, edit{Title: "Kept", BaseVersion: 0})

	noRead := []user{{Name: "nobody"}, {}, {Name: "wanda", Permissions: "write"}, {Name: "rita", Permissions: "reader"}}
	for _, u := range noRead {
		for _, r := range []struct{ method, path string }{
			{"GET", "/"}, {"GET", "/api/note"}, {"PUT", "/api/note"}, {"GET", "/ws"},
		} {
			body := strings.NewReader(`{"title":"x","text":"y","baseVersion":1}`)
			if status, _ := do(t, u, r.method, ts.URL+r.path, body); status != http.StatusForbidden {
				t.Errorf("%s %s with permissions %q: status %d, want 403", r.method, r.path, u.Permissions, status)
			}
		}
		_, resp, err := websocket.Dial(t.Context(), wsURL(ts), &websocket.DialOptions{HTTPHeader: u.Header()})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("websocket with permissions %q: err %v, want a 403", u.Permissions, err)
		}
	}

	if status, _ := putNote(t, ts, viewer, edit{Title: "Changed", BaseVersion: 1}); status != http.StatusForbidden {
		t.Errorf("PUT without write: status %d, want 403", status)
	}
	anonymousViewer := user{Name: "", Permissions: " read "}
	if got := getNote(t, ts, anonymousViewer); got != saved {
		t.Errorf("note = %+v, want unchanged %+v", got, saved)
	}
}

func TestPageShowsWhetherWritable(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	for _, tt := range []struct {
		u    user
		want string
	}{
		{alice, `data-can-write="true"`},
		{viewer, `data-can-write="false"`},
	} {
		status, b := do(t, tt.u, "GET", ts.URL+"/", nil)
		if status != http.StatusOK {
			t.Fatalf("GET / as %s: status %d", tt.u.Name, status)
		}
		page := string(b)
		for _, want := range []string{tt.want, `data-testid="note-title"`, `data-testid="note-text"`, `data-testid="status"`, `data-testid="updated-by"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page for %s lacks %s", tt.u.Name, want)
			}
		}
	}
	if status, _ := do(t, alice, "GET", ts.URL+"/nothing", nil); status != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d, want 404", status)
	}
}

func TestBadRequests(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	_, saved := putNote(t, ts, alice, edit{Title: "Kept", BaseVersion: 0})

	tooBig, err := json.Marshal(edit{Text: strings.Repeat("x", maxBody), BaseVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		body string
	}{
		{"not JSON", "title=x"},
		{"truncated", `{"title":"x","text":`},
		{"wrong type", `{"title":"x","text":"y","baseVersion":"1"}`},
		{"trailing data", `{"title":"x","text":"y","baseVersion":1} {}`},
		{"over 1 MiB", string(tooBig)},
	} {
		if status, b := do(t, alice, "PUT", ts.URL+"/api/note", strings.NewReader(tt.body)); status != http.StatusBadRequest {
			t.Errorf("%s: status %d %s, want 400", tt.name, status, b)
		}
	}
	if got := getNote(t, ts, alice); got != saved {
		t.Errorf("note = %+v, want unchanged %+v", got, saved)
	}
}

func TestSaveLeavesOnlyTheNoteFile(t *testing.T) {
	dir := t.TempDir()
	ts, _ := startServer(t, dir)
	var last note
	for i := range 5 {
		_, last = putNote(t, ts, alice, edit{Title: "T", Text: strings.Repeat("line\n", i), BaseVersion: int64(i)})
	}
	assertOnlyNoteFile(t, dir, last)
}

func TestOpenRemovesUnfinishedSave(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := s.update(edit{Title: "Safe", Text: "saved"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A crash between writing the temporary file and renaming it.
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"123"), []byte(`{"title":"Hal`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.get(); got != saved {
		t.Errorf("after crash: %+v, want %+v", got, saved)
	}
	assertOnlyNoteFile(t, dir, saved)
}

func TestOpenRefusesCorruptNote(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, noteFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(dir); err == nil {
		t.Fatal("openStore succeeded on a corrupt note")
	}
}

func assertOnlyNoteFile(t *testing.T, dir string, want note) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != noteFile {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in data dir: %q, want only %s", names, noteFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, noteFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := decode[note](t, b); got != want {
		t.Errorf("%s holds %+v, want %+v", noteFile, got, want)
	}
}

// A message is anything the server sends on the websocket.
type message struct {
	Type string `json:"type"`
	note
	Status  int    `json:"status"`
	Message string `json:"message"`
	Note    *note  `json:"note"`
}

func wsURL(ts *httptest.Server) string { return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws" }

// dial opens a websocket as u and returns it once the first note arrived.
func dial(t *testing.T, ts *httptest.Server, u user) (*websocket.Conn, note) {
	t.Helper()
	c, _, err := websocket.Dial(t.Context(), wsURL(ts), &websocket.DialOptions{HTTPHeader: u.Header()})
	if err != nil {
		t.Fatalf("dial as %s: %v", u.Name, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	m := next(t, c)
	if m.Type != "note" {
		t.Fatalf("first message %+v, want a note", m)
	}
	return c, m.note
}

func next(t *testing.T, c *websocket.Conn) message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return decode[message](t, b)
}

// waitNote reads from c until a note of version v arrives.
func waitNote(t *testing.T, c *websocket.Conn, v int64) note {
	t.Helper()
	for {
		m := next(t, c)
		if m.Type == "note" && m.Version >= v {
			if m.Version != v {
				t.Fatalf("got note version %d, want %d", m.Version, v)
			}
			return m.note
		}
		if m.Type != "note" {
			t.Fatalf("got %+v, want note version %d", m, v)
		}
	}
}

func sendEdit(t *testing.T, c *websocket.Conn, e edit) {
	t.Helper()
	b, err := json.Marshal(clientMessage{Type: "edit", edit: e})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func TestLiveUpdates(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	a, _ := dial(t, ts, alice)
	b, first := dial(t, ts, bob)
	if first.Version != 0 {
		t.Fatalf("first note %+v, want version 0", first)
	}

	sendEdit(t, a, edit{Title: "Live", Text: "from alice", BaseVersion: 0})
	if n := waitNote(t, a, 1); n.Text != "from alice" {
		t.Errorf("alice's reply: %+v", n)
	}
	if n := waitNote(t, b, 1); n.Text != "from alice" || n.UpdatedBy != "alice" {
		t.Errorf("bob saw %+v, want alice's edit", n)
	}

	status, _ := putNote(t, ts, user{Name: "carol", Permissions: "read,write"}, edit{Title: "Live", Text: "from carol", BaseVersion: 1})
	if status != http.StatusOK {
		t.Fatalf("PUT: status %d", status)
	}
	for name, c := range map[string]*websocket.Conn{"alice": a, "bob": b} {
		if n := waitNote(t, c, 2); n.Text != "from carol" || n.UpdatedBy != "carol" {
			t.Errorf("%s saw %+v, want carol's PUT", name, n)
		}
	}

	// A late joiner starts from the current note.
	if _, n := dial(t, ts, viewer); n.Version != 2 || n.Text != "from carol" {
		t.Errorf("new socket started with %+v", n)
	}
}

func TestSocketErrors(t *testing.T) {
	ts, _ := startServer(t, t.TempDir())
	a, _ := dial(t, ts, alice)
	v, _ := dial(t, ts, viewer)

	sendEdit(t, v, edit{Title: "Vandal", BaseVersion: 0})
	if m := next(t, v); m.Type != "error" || m.Status != http.StatusForbidden || m.Message == "" {
		t.Errorf("edit without write: %+v, want a 403 error", m)
	}

	sendEdit(t, a, edit{Title: "First", BaseVersion: 0})
	saved := waitNote(t, a, 1)
	sendEdit(t, a, edit{Title: "Stale", BaseVersion: 0})
	m := next(t, a)
	for m.Type == "note" { // the push of version 1 may come after the reply
		m = next(t, a)
	}
	if m.Status != http.StatusConflict || m.Note == nil || *m.Note != saved {
		t.Errorf("stale edit: %+v, want a 409 error with the current note", m)
	}

	if err := a.Write(t.Context(), websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := next(t, a); m.Type != "error" || m.Status != http.StatusBadRequest {
		t.Errorf("malformed message: %+v, want a 400 error", m)
	}

	if got := getNote(t, ts, alice); got != saved {
		t.Errorf("note = %+v, want %+v", got, saved)
	}
}

func TestCloseEndsSockets(t *testing.T) {
	ts, a := startServer(t, t.TempDir())
	c, _ := dial(t, ts, alice)
	read := make(chan error, 1)
	go func() {
		_, _, err := c.Read(context.Background())
		read <- err
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-read; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("read after close: %v, want status going away", err)
	}

	c, _, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{HTTPHeader: alice.Header()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("socket opened after close: %v, want status going away", err)
	}
}
