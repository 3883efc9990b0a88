package realapps

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/nodetest"
)

// davClient is a CalDAV/CardDAV client as a calendar app is one: no
// cookies, the grain API token as the password of Basic auth (how DAV
// clients send credentials), sent to the node's API origin.
type davClient struct {
	t      *testing.T
	c      *http.Client
	origin string
	token  string
}

func newDAVClient(t *testing.T, n *nodetest.Node, tok erg.GrainToken) *davClient {
	c := n.Browser()
	c.Jar = nil
	// A DAV client follows a redirect itself, with the same method.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &davClient{t: t, c: c, origin: tok.URL, token: tok.Token}
}

func (d *davClient) do(method, path, body string, hdr ...string) (int, string, http.Header) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.origin+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.SetBasicAuth("calendar-app", d.token)
	if body != "" {
		ct := "application/xml; charset=utf-8"
		if strings.HasPrefix(body, "BEGIN:VCALENDAR") {
			ct = "text/calendar; charset=utf-8"
		} else if strings.HasPrefix(body, "BEGIN:VCARD") {
			ct = "text/vcard; charset=utf-8"
		}
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := d.c.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// must sends a request that must answer want.
func (d *davClient) must(want int, method, path, body string, hdr ...string) (string, http.Header) {
	d.t.Helper()
	code, got, h := d.do(method, path, body, hdr...)
	if code != want {
		d.t.Fatalf("%s %s = %d, want %d: %s", method, path, code, want, got)
	}
	return got, h
}

// href is the first <href> inside the element named tag (any prefix).
func href(t *testing.T, multistatus, tag string) string {
	t.Helper()
	m := regexp.MustCompile(`<(?:\w+:)?` + tag + `>\s*<(?:\w+:)?href>([^<]+)</`).FindStringSubmatch(multistatus)
	if m == nil {
		t.Fatalf("no %s href in %s", tag, multistatus)
	}
	return m[1]
}

func syncToken(t *testing.T, multistatus string) string {
	t.Helper()
	m := regexp.MustCompile(`<(?:\w+:)?sync-token>([^<]+)</`).FindStringSubmatch(multistatus)
	if m == nil {
		t.Fatalf("no sync-token in %s", multistatus)
	}
	return m[1]
}

func vevent(uid, summary, start string) string {
	return strings.ReplaceAll(`BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//erg//realapps test//EN
BEGIN:VEVENT
UID:`+uid+`
DTSTAMP:20261201T090000Z
DTSTART:`+start+`
DURATION:PT1H
SUMMARY:`+summary+`
END:VEVENT
END:VCALENDAR
`, "\n", "\r\n")
}

const (
	propfindHome = `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:prop><d:current-user-principal/><c:calendar-home-set/><card:addressbook-home-set/></d:prop></d:propfind>`
	propfindList = `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:displayname/><d:sync-token/></d:prop></d:propfind>`
	mkcalendar   = `<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>Work</d:displayname><c:calendar-description>Made by the CalDAV client</c:calendar-description></d:prop></d:set></c:mkcalendar>`
	queryDec     = `<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261201T000000Z" end="20270101T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
)

func syncCollection(token string) string {
	return `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
}

// TestRadicale runs Radicale in a grain (installed on bob's node from the
// store): a CalDAV client with an editor grain API token finds the
// calendar home the way clients do, makes a calendar, puts events, queries
// them by time range and syncs by token, and puts a contact; a viewer
// token reads but every change it tries is refused; alice sees the
// client's calendar in Radicale's web view through the shell, and bob, a
// friend with a viewer share, sees it there too and cannot change it; the
// events are there after the grain was stopped.
func TestRadicale(t *testing.T) {
	_, a, b, g := onTwoFriends(t, "radicale", "calendar", "Calendar")
	ctx := context.Background()
	edTok, err := a.Client().NewGrainToken(ctx, g.ID, erg.GrainTokenRequest{Role: "editor", Label: "calendar app"})
	if err != nil {
		t.Fatal(err)
	}
	viewTok, err := a.Client().NewGrainToken(ctx, g.ID, erg.GrainTokenRequest{Role: "viewer", Label: "read-only calendar app"})
	if err != nil {
		t.Fatal(err)
	}
	ed := newDAVClient(t, a, edTok)

	// Discovery (RFC 6764, then RFC 4791's properties), as a client set
	// up with only the API origin does it; the first request starts the
	// grain.
	code, _, hdr := ed.do("PROPFIND", "/.well-known/caldav", propfindHome, "Depth", "0")
	if code/100 != 3 || hdr.Get("Location") == "" {
		t.Fatalf("PROPFIND /.well-known/caldav = %d (Location %q), want a redirect", code, hdr.Get("Location"))
	}
	ms, _ := ed.must(207, "PROPFIND", "/", propfindHome, "Depth", "0")
	principal := href(t, ms, "current-user-principal")
	ms, _ = ed.must(207, "PROPFIND", principal, propfindHome, "Depth", "0")
	home := href(t, ms, "calendar-home-set")
	if abook := href(t, ms, "addressbook-home-set"); abook != home {
		t.Logf("address book home %s, calendar home %s", abook, home)
	}
	ms, _ = ed.must(207, "PROPFIND", home, propfindList, "Depth", "1")
	for _, want := range []string{home + "calendar/", home + "contacts/", "<C:calendar />", "<CR:addressbook />"} {
		if !strings.Contains(ms, want) {
			t.Errorf("the new grain's home lacks %s: %s", want, ms)
		}
	}

	// A calendar of the client's own, two events, a time-range query.
	work := home + "work/"
	ed.must(201, "MKCALENDAR", work, mkcalendar)
	_, h := ed.must(201, "PUT", work+"standup.ics", vevent("standup@erg-test", "Standup with the team", "20261203T090000Z"), "If-None-Match", "*")
	etag := h.Get("ETag")
	ms, _ = ed.must(207, "PROPFIND", work, propfindList, "Depth", "0")
	token := syncToken(t, ms)
	ed.must(201, "PUT", work+"review.ics", vevent("review@erg-test", "Quarterly review", "20261215T140000Z"), "If-None-Match", "*")
	ms, _ = ed.must(207, "REPORT", work, queryDec, "Depth", "1")
	if !strings.Contains(ms, "SUMMARY:Standup with the team") || !strings.Contains(ms, "SUMMARY:Quarterly review") {
		t.Errorf("the December query lacks an event: %s", ms)
	}
	ms, _ = ed.must(207, "REPORT", work, syncCollection(token))
	if !strings.Contains(ms, work+"review.ics") || strings.Contains(ms, work+"standup.ics") {
		t.Errorf("sync from the token after the first event should name only the second: %s", ms)
	}
	// Changing an event needs its current ETag.
	ed.must(412, "PUT", work+"standup.ics", vevent("standup@erg-test", "Stale", "20261203T090000Z"), "If-Match", `"not-the-etag"`)
	// Radicale answers a replaced resource with 201, as RFC 4918 allows.
	ed.must(201, "PUT", work+"standup.ics", vevent("standup@erg-test", "Standup moved to ten", "20261203T100000Z"), "If-Match", etag)
	ed.must(201, "PUT", home+"contacts/dora.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:dora@erg-test\r\nFN:Dora Explorer\r\nN:Explorer;Dora;;;\r\nEMAIL:dora@example.org\r\nEND:VCARD\r\n")

	// A viewer token reads and changes nothing.
	vw := newDAVClient(t, a, viewTok)
	if ms, _ := vw.must(207, "REPORT", work, queryDec, "Depth", "1"); !strings.Contains(ms, "SUMMARY:Standup moved to ten") {
		t.Errorf("the viewer's query: %s", ms)
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", work + "forged.ics", vevent("forged@erg-test", "Forged", "20261204T090000Z")},
		{"PUT", work + "standup.ics", vevent("standup@erg-test", "Forged", "20261203T090000Z")},
		{"DELETE", work + "review.ics", ""},
		{"DELETE", work, ""},
		{"MKCALENDAR", home + "forged/", mkcalendar},
		{"PROPPATCH", work, `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Forged</d:displayname></d:prop></d:set></d:propertyupdate>`},
		{"MOVE", work + "review.ics", ""},
	} {
		if code, body, _ := vw.do(c.method, c.path, c.body, "Destination", edTok.URL+work+"moved.ics"); code != http.StatusForbidden {
			t.Errorf("viewer token's %s %s = %d, want 403: %s", c.method, c.path, code, body)
		}
	}
	ms, _ = ed.must(207, "REPORT", work, queryDec, "Depth", "1")
	if strings.Count(ms, "BEGIN:VEVENT") != 2 || strings.Contains(ms, "Forged") {
		t.Errorf("after the viewer's tries the calendar is %s", ms)
	}

	// Alice, in Radicale's web view through the shell: the grain's own
	// login form takes any name (erg has said who she is) and lists the
	// client's calendar, whose link serves the client's events.
	br := newBrowser(t)
	alice := br.newTab()
	alice.open(a, g.ID)
	webLogin(alice)
	alice.waitJS("the client's calendar in the web view", webShows("Work", "Made by the CalDAV client"))
	ics := evalJS[string](alice, `(() => { const a = [...document.querySelectorAll("#collectionsscene article:not(.hidden)")].find(e => e.innerText.includes("Work")).querySelector("a[data-name=url]"); return fetch(a.href).then(r => r.text()); })()`)
	if !strings.Contains(ics, "SUMMARY:Standup moved to ten") || !strings.Contains(ics, "SUMMARY:Quarterly review") {
		t.Errorf("the web view's link to the calendar serves %q", ics)
	}

	// Bob, a friend with a viewer share, on his own node.
	a.ShareWith(g, b, "viewer")
	bob := br.newTab()
	bob.open(b, b.Shared("Calendar").ID)
	webLogin(bob)
	bob.waitJS("the calendar in bob's web view", webShows("Work", "Made by the CalDAV client"))
	for _, js := range []string{
		`fetch("` + work + `review.ics", {method: "DELETE"}).then(r => r.status)`,
		`fetch("` + work + `bob.ics", {method: "PUT", headers: {"Content-Type": "text/calendar"}, body: ` + jsString(vevent("bob@erg-test", "Bob's", "20261205T090000Z")) + `}).then(r => r.status)`,
		`fetch("` + work + `", {method: "DELETE", headers: {"X-Remote-User": "grain", "X-Erg-Permissions": "read,write"}}).then(r => r.status)`,
	} {
		if code := evalJS[int](bob, js); code != http.StatusForbidden {
			t.Errorf("bob's %s = %d, want 403", js, code)
		}
	}

	// Stopped and started again, the grain keeps its events and contact.
	a.Restart()
	ed = newDAVClient(t, a, edTok)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, ms, _ := ed.do("REPORT", work, queryDec, "Depth", "1")
		if code == 207 && strings.Count(ms, "BEGIN:VEVENT") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart the calendar is %d %s", code, ms)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if card, _ := ed.must(200, "GET", home+"contacts/dora.vcf", ""); !strings.Contains(card, "FN:Dora Explorer") {
		t.Errorf("the contact after a restart: %s", card)
	}
	again := br.newTab()
	again.open(a, g.ID)
	webLogin(again)
	again.waitJS("the calendar in the web view after a restart", webShows("Work", "Made by the CalDAV client"))
}

// webLogin signs in to Radicale's web view with its own form, as a user
// types a name into it.
func webLogin(u *tab) {
	u.t.Helper()
	u.waitJS("Radicale's login form", `(() => { const s = document.getElementById("loginscene"); return !!s && !s.classList.contains("hidden"); })()`)
	u.do("sign in to the web view", evalDo(`(() => {
		const s = document.getElementById("loginscene");
		s.querySelector("[data-name=user]").value = "me";
		s.querySelector("[data-name=form]").requestSubmit();
		return true;
	})()`))
}

// webShows says whether the web view lists a collection with the title
// and description.
func webShows(title, description string) string {
	return `[...document.querySelectorAll("#collectionsscene article:not(.hidden)")].some(e => e.querySelector("[data-name=title]").textContent === ` + jsString(title) + ` && e.querySelector("[data-name=description]").textContent === ` + jsString(description) + `)`
}
