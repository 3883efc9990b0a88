package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"erg/apps/internal/appkit/appkittest"
)

// A user is the identity the node's proxy would assert for a request.
type user = appkittest.User

var (
	alice  = user{Name: "alice", Permissions: "read,write"}
	bob    = user{Name: "bob", Permissions: "read,write"}
	viewer = user{Name: "vera", Permissions: "read"}
	anon   = user{Name: "", Permissions: "read,write"}
	nobody = user{Name: "mallory", Permissions: ""}
)

// startServer serves the list stored in dir, as the node would reach it.
func startServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(newApp(s, &attachments{dir: dir}, slog.New(slog.DiscardHandler)).handler())
	t.Cleanup(ts.Close)
	return ts
}

// do makes a request as u and returns the status and body.
func do(t *testing.T, u user, method, url, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
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

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func mustDo(t *testing.T, u user, want int, method, url, body string) []byte {
	t.Helper()
	status, b := do(t, u, method, url, body)
	if status != want {
		t.Fatalf("%s %s as %q: status %d, want %d: %s", method, url, u.Name, status, want, b)
	}
	return b
}

func items(t *testing.T, ts *httptest.Server, u user, query string) []item {
	t.Helper()
	return decode[[]item](t, mustDo(t, u, http.StatusOK, "GET", ts.URL+"/api/items"+query, ""))
}

func texts(its []item) []string {
	var out []string
	for _, it := range its {
		out = append(out, it.Text)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	ts := startServer(t, t.TempDir())
	if got := items(t, ts, alice, ""); len(got) != 0 {
		t.Fatalf("new list has items %v", got)
	}
	milk := decode[item](t, mustDo(t, alice, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"  Buy milk "}`))
	if milk.Text != "Buy milk" || milk.Done || milk.CreatedBy != "alice" || milk.ID == 0 {
		t.Errorf("added %+v", milk)
	}
	eggs := decode[item](t, mustDo(t, bob, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"Eggs"}`))
	if eggs.ID == milk.ID {
		t.Errorf("two items share id %d", eggs.ID)
	}
	url := ts.URL + "/api/items/"
	done := decode[item](t, mustDo(t, bob, http.StatusOK, "PATCH", url+itoa(milk.ID), `{"done":true}`))
	if !done.Done || done.Text != "Buy milk" {
		t.Errorf("ticked %+v", done)
	}
	renamed := decode[item](t, mustDo(t, bob, http.StatusOK, "PATCH", url+itoa(eggs.ID), `{"text":"Twelve eggs"}`))
	if renamed.Text != "Twelve eggs" || renamed.Done {
		t.Errorf("renamed %+v", renamed)
	}
	got := items(t, ts, viewer, "")
	if strings.Join(texts(got), "|") != "Buy milk|Twelve eggs" || !got[0].Done {
		t.Errorf("list is %+v", got)
	}
	mustDo(t, alice, http.StatusNoContent, "DELETE", url+itoa(milk.ID), "")
	mustDo(t, alice, http.StatusNotFound, "DELETE", url+itoa(milk.ID), "")
	mustDo(t, alice, http.StatusNotFound, "PATCH", url+itoa(milk.ID), `{"done":false}`)
	if got := texts(items(t, ts, alice, "")); strings.Join(got, "|") != "Twelve eggs" {
		t.Errorf("after delete: %v", got)
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir)
	mustDo(t, alice, http.StatusOK, "GET", ts.URL+"/api/people", "")
	mustDo(t, bob, http.StatusOK, "GET", ts.URL+"/", "")
	a := decode[item](t, mustDo(t, alice, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"Keep me","assignee":"bob"}`))
	mustDo(t, alice, http.StatusOK, "PATCH", ts.URL+"/api/items/"+itoa(a.ID), `{"done":true}`)
	ts.Close()

	ts = startServer(t, dir)
	got := items(t, ts, viewer, "")
	if len(got) != 1 || got[0].Text != "Keep me" || !got[0].Done || got[0].Assignee != "bob" || got[0].ID != a.ID {
		t.Errorf("after restart: %+v", got)
	}
	b := decode[item](t, mustDo(t, alice, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"New"}`))
	if b.ID <= a.ID {
		t.Errorf("id %d reused after restart (had %d)", b.ID, a.ID)
	}
	people := decode[[]string](t, mustDo(t, alice, http.StatusOK, "GET", ts.URL+"/api/people", ""))
	if strings.Join(people, ",") != "alice,bob,vera" {
		t.Errorf("people after restart: %v", people)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != listFile {
		t.Errorf("data dir holds %v, want only %s", entries, listFile)
	}
}

func TestAssignmentAndMine(t *testing.T) {
	ts := startServer(t, t.TempDir())
	post := func(u user, body string, want int) item {
		t.Helper()
		b := mustDo(t, u, want, "POST", ts.URL+"/api/items", body)
		if want != http.StatusCreated {
			return item{}
		}
		return decode[item](t, b)
	}
	// Nobody but alice has visited, so bob cannot be assigned yet.
	post(alice, `{"text":"For bob","assignee":"bob"}`, http.StatusBadRequest)
	// Visiting as anyone named, even read-only, makes them assignable;
	// anonymous visitors are not remembered.
	mustDo(t, bob, http.StatusOK, "GET", ts.URL+"/", "")
	mustDo(t, viewer, http.StatusOK, "GET", ts.URL+"/api/items", "")
	mustDo(t, anon, http.StatusOK, "GET", ts.URL+"/api/items", "")
	mustDo(t, nobody, http.StatusForbidden, "GET", ts.URL+"/api/items", "")
	people := decode[[]string](t, mustDo(t, alice, http.StatusOK, "GET", ts.URL+"/api/people", ""))
	if strings.Join(people, ",") != "alice,bob,vera" {
		t.Fatalf("people: %v", people)
	}

	forBob := post(alice, `{"text":"For bob","assignee":"bob"}`, http.StatusCreated)
	forVera := post(bob, `{"text":"For vera","assignee":"vera"}`, http.StatusCreated)
	post(bob, `{"text":"Unassigned"}`, http.StatusCreated)
	if forBob.Assignee != "bob" {
		t.Errorf("assigned %+v", forBob)
	}

	mine := func(u user, want string) {
		t.Helper()
		for _, q := range []string{"?mine=1", "?mine=true"} {
			if got := strings.Join(texts(items(t, ts, u, q)), "|"); got != want {
				t.Errorf("%s mine%s: %q, want %q", u.Name, q, got, want)
			}
		}
	}
	mine(bob, "For bob")
	mine(viewer, "For vera")
	mine(alice, "")
	mine(anon, "")
	if got := len(items(t, ts, bob, "?mine=false")); got != 3 {
		t.Errorf("mine=false shows %d items, want 3", got)
	}

	// Reassign to alice, then unassign.
	url := ts.URL + "/api/items/" + itoa(forVera.ID)
	mustDo(t, bob, http.StatusOK, "PATCH", url, `{"assignee":"alice"}`)
	mine(alice, "For vera")
	mine(viewer, "")
	mustDo(t, bob, http.StatusBadRequest, "PATCH", url, `{"assignee":"stranger"}`)
	mustDo(t, bob, http.StatusOK, "PATCH", url, `{"assignee":""}`)
	mine(alice, "")
}

func TestPermissions(t *testing.T) {
	ts := startServer(t, t.TempDir())
	it := decode[item](t, mustDo(t, alice, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"x"}`))
	url := ts.URL + "/api/items/" + itoa(it.ID)
	for _, r := range []struct{ method, url, body string }{
		{"GET", ts.URL + "/", ""},
		{"GET", ts.URL + "/api/items", ""},
		{"GET", ts.URL + "/api/people", ""},
		{"POST", ts.URL + "/api/items", `{"text":"y"}`},
		{"PATCH", url, `{"done":true}`},
		{"DELETE", url, ""},
	} {
		mustDo(t, nobody, http.StatusForbidden, r.method, r.url, r.body)
		if r.method != "GET" {
			mustDo(t, viewer, http.StatusForbidden, r.method, r.url, r.body)
		}
	}
	if got := items(t, ts, viewer, ""); len(got) != 1 || got[0].Done {
		t.Errorf("after refused writes: %+v", got)
	}
	// No read permission means not remembered either.
	people := decode[[]string](t, mustDo(t, alice, http.StatusOK, "GET", ts.URL+"/api/people", ""))
	if strings.Join(people, ",") != "alice,vera" {
		t.Errorf("people: %v", people)
	}

	page := string(mustDo(t, viewer, http.StatusOK, "GET", ts.URL+"/", ""))
	if !strings.Contains(page, `data-can-write="false"`) || !strings.Contains(page, `data-username="vera"`) {
		t.Errorf("viewer's page does not say read-only")
	}
	page = string(mustDo(t, alice, http.StatusOK, "GET", ts.URL+"/", ""))
	if !strings.Contains(page, `data-can-write="true"`) {
		t.Errorf("editor's page does not say writable")
	}
}

func TestBadRequests(t *testing.T) {
	ts := startServer(t, t.TempDir())
	it := decode[item](t, mustDo(t, alice, http.StatusCreated, "POST", ts.URL+"/api/items", `{"text":"x"}`))
	url := ts.URL + "/api/items/"
	for _, r := range []struct{ method, url, body string }{
		{"POST", ts.URL + "/api/items", ``},
		{"POST", ts.URL + "/api/items", `not json`},
		{"POST", ts.URL + "/api/items", `{"text":"a"} {"text":"b"}`},
		{"POST", ts.URL + "/api/items", `{"text":"a","bogus":1}`},
		{"POST", ts.URL + "/api/items", `{}`},
		{"POST", ts.URL + "/api/items", `{"text":"   "}`},
		{"POST", ts.URL + "/api/items", `{"text":"two\nlines"}`},
		{"POST", ts.URL + "/api/items", `{"text":"` + strings.Repeat("a", maxText+1) + `"}`},
		{"POST", ts.URL + "/api/items", `{"text":"` + strings.Repeat("a", maxBody) + `"}`},
		{"POST", ts.URL + "/api/items", `{"text":5}`},
		{"PATCH", url + itoa(it.ID), `{"done":"yes"}`},
		{"PATCH", url + itoa(it.ID), `{"text":""}`},
		{"PATCH", url + "abc", `{"done":true}`},
		{"PATCH", url + "-1", `{"done":true}`},
		{"DELETE", url + "1.5", ``},
		{"GET", ts.URL + "/api/items?mine=maybe", ``},
	} {
		status, b := do(t, alice, r.method, r.url, r.body)
		if status != http.StatusBadRequest {
			t.Errorf("%s %s %.40q: status %d, want 400: %s", r.method, r.url, r.body, status, b)
		}
	}
	if got := items(t, ts, alice, ""); len(got) != 1 || got[0].Text != "x" || got[0].Done {
		t.Errorf("after bad requests: %+v", got)
	}
}

func TestOpenRemovesUnfinishedSave(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"123"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, tempPrefix+"123")); !os.IsNotExist(err) {
		t.Errorf("leftover temp file: %v", err)
	}
}

func TestOpenRefusesCorruptList(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, listFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(dir); err == nil {
		t.Error("opened a corrupt list")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
