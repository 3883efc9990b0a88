package webui

import (
	"bytes"
	"embed"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"erg"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one parsed template set per page.
type pages struct {
	t map[string]*template.Template
}

var pageFuncs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t)
		switch {
		case d < time.Minute:
			return "just now"
		case d < time.Hour:
			return fmt.Sprintf("%d min ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%d h ago", int(d.Hours()))
		}
		return t.Format("2 Jan 2006")
	},
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2 Jan 2006 15:04")
	},
	// hue picks one of eight colours for an app's letter tile.
	"hue": func(s string) int {
		h := fnv.New32a()
		io.WriteString(h, s)
		return int(h.Sum32() % 8)
	},
	"mib": func(n int64) string {
		if n >= 1<<30 && n%(1<<30) == 0 {
			return fmt.Sprintf("%d GiB", n>>30)
		}
		return fmt.Sprintf("%d MiB", n>>20)
	},
	"size":  FormatSize,
	"usage": usageLine,
	"limitsOf": func(g erg.Grain, csrf, back string) limitsView {
		return limitsView{Grain: g, CSRF: csrf, Back: back}
	},
	"gib": func(n int64) string { return strconv.FormatFloat(float64(n)/(1<<30), 'f', -1, 64) },
	"hours": func(d erg.Duration) string {
		return strconv.FormatFloat(time.Duration(d).Hours(), 'f', -1, 64)
	},
	"initial": func(s string) string {
		for _, r := range strings.TrimSpace(s) {
			return strings.ToUpper(string(r))
		}
		return "?"
	},
	"roleTitle": func(roles []erg.Role, name string) string {
		for _, r := range roles {
			if r.Name == name && r.Title != "" {
				return r.Title
			}
		}
		return name
	},
}

func newPages() *pages {
	p := &pages{t: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, name := range names {
		if name == "templates/layout.html" {
			continue
		}
		page := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		p.t[page] = template.Must(template.New(page).Funcs(pageFuncs).ParseFS(templateFS, "templates/layout.html", name))
	}
	return p
}

// pageData is what every page template gets.
type pageData struct {
	Title  string
	Me     *erg.User
	CSRF   string
	Nav    string
	Error  string
	Notice string
	// Warning is the backups' warning, on the owner's pages.
	Warning string
	Data    any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, page string, d pageData) {
	if a, ok := actorOf(r); ok && d.Me == nil {
		d.Me, d.CSRF = &a.user, a.csrf
	}
	if d.Me != nil && d.Me.Owner {
		d.Warning = h.bk.Warning(r.Context())
	}
	var buf bytes.Buffer
	if err := h.pages.t[page].ExecuteTemplate(&buf, "page", d); err != nil {
		h.log.Error("render", "page", page, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// failPage shows an error page saying what went wrong, with the status the
// error calls for.
func (h *Handler) failPage(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	msg := erg.Message(err)
	if code == http.StatusInternalServerError {
		h.log.Error("page failed", "path", r.URL.Path, "err", err)
		msg = "Something went wrong on this node. The node's log says more."
	}
	h.render(w, r, code, "error", pageData{Title: http.StatusText(code), Error: msg})
}

func (h *Handler) shellRoutes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	staticServer := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		staticServer.ServeHTTP(w, r)
	}))
	mux.Handle("/api/", h.httpAPI())

	for _, p := range h.publicRoutes() {
		if strings.HasPrefix(p.pattern, "GET ") {
			mux.HandleFunc(p.pattern, p.h)
		} else {
			mux.HandleFunc(p.pattern, h.public(p.h))
		}
	}
	for _, p := range h.pageRoutes {
		mux.HandleFunc(p.pattern, h.signedIn(p))
	}
	return h.pageHeaders(mux)
}

// publicRoute is a shell route open to anyone: the sign-in forms and
// sharing links.
type publicRoute struct {
	pattern string
	h       http.HandlerFunc
}

func (h *Handler) publicRoutes() []publicRoute {
	return []publicRoute{
		{"GET /{$}", h.root},
		{"GET /setup", h.setupPage},
		{"POST /setup", h.setup},
		{"POST /setup/restore", h.restoreNode},
		{"GET /login", h.loginPage},
		{"POST /login", h.loginPost},
		{"GET /invite/{token}", h.invitePage},
		{"POST /invite/{token}", h.acceptInvite},
		{"GET /s/{token}", h.openShare},
	}
}

// pageRoute is a page for signed-in users. upload marks the few that take
// a multipart upload (whose first part is the CSRF token); every other
// page refuses a multipart body.
type pageRoute struct {
	pattern string
	h       func(http.ResponseWriter, *http.Request, actor)
	upload  bool
}

// allPageRoutes lists every signed-in page, the Friends and Store pages
// included; the mux and Routes both read it, so add new pages here.
func (h *Handler) allPageRoutes() []pageRoute {
	routes := []pageRoute{
		{"POST /logout", h.logout, false},
		{"GET /grains", h.grainsPage, false},
		{"POST /grains", h.newGrain, false},
		{"POST /grains/restore", h.restoreGrain, true},
		{"GET /grains/{id}", h.shellPage, false},
		{"POST /grains/{id}/rename", h.renameGrain, false},
		{"POST /grains/{id}/limits", h.setLimitsPage, false},
		{"GET /grains/{id}/delete", h.confirmDeleteGrain, false},
		{"POST /grains/{id}/delete", h.deleteGrain, false},
		{"GET /grains/{id}/backup", h.backupGrain, false},
		{"POST /grains/{id}/shares", h.newShare, false},
		{"POST /shares/{id}/revoke", h.revokeShare, false},
		{"POST /grains/{id}/tokens", h.newGrainToken, false},
		{"POST /grain-tokens/{id}/revoke", h.revokeGrainToken, false},
		{"POST /grants/{id}/revoke", h.revokeGrant, false},
		{"GET /apps", h.appsPage, false},
		{"POST /apps", h.installApp, true},
		{"POST /apps/{id}/remove", h.removeApp, false},
		{"GET /apps/{id}/icon", h.appIcon, false},
		{"GET /users", h.usersPage, false},
		{"POST /users/invite", h.inviteUser, false},
		{"GET /users/{name}/remove", h.confirmRemoveUser, false},
		{"POST /users/{name}/remove", h.removeUser, false},
		{"GET /users/grains/{id}/delete", h.confirmDeleteNodeGrain, false},
		{"POST /users/grains/{id}/delete", h.deleteNodeGrain, false},
		{"POST /invites/{id}/cancel", h.cancelInvite, false},
		{"GET /settings", h.settingsPage, false},
		{"POST /settings/password", h.changePassword, false},
		{"POST /settings/tokens", h.newToken, false},
		{"POST /settings/tokens/{id}/revoke", h.revokeToken, false},
	}
	routes = append(routes, h.friendPages()...)
	routes = append(routes, h.tlsPages()...)
	routes = append(routes, h.remotePages()...)
	routes = append(routes, h.backupPages()...)
	return append(routes, h.storePages()...)
}

// Route describes one of the shell's routes, for tests that must cover
// every route, including ones added later.
type Route struct {
	Pattern  string // as the mux has it: "POST /grains/{id}/rename"
	SignedIn bool   // needs a session
	Upload   bool   // takes a multipart upload
}

// Routes lists the shell's page routes (the JSON API under /api/ aside).
func (h *Handler) Routes() []Route {
	var rs []Route
	for _, p := range h.publicRoutes() {
		rs = append(rs, Route{Pattern: p.pattern})
	}
	for _, p := range h.pageRoutes {
		rs = append(rs, Route{Pattern: p.pattern, SignedIn: true, Upload: p.upload})
	}
	return rs
}

// pageHeaders sets what every shell response carries: a strict content
// policy (scripts and styles only from /static; frames only from grain
// origins), no framing of the shell, and no Referer to other origins, so
// a grain never sees the shell's address (a sharing link's secret is in
// it).
func (h *Handler) pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		port := ""
		if _, p, err := net.SplitHostPort(r.Host); err == nil && p != "" {
			port = ":" + p
		}
		hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; frame-src "+scheme+"://*."+h.domain+port)
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hdr.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// signedIn runs a page for a signed-in user: others are sent to the login
// page. Every state-changing request must come from the shell's own
// origin and carry the session's CSRF token, whatever its content type: a
// multipart body is refused unless the route takes an upload, and an
// upload route checks the token in the stream's first part
// (multipartUpload) before it reads the file.
func (h *Handler) signedIn(p pageRoute) http.HandlerFunc {
	page := p.h
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := h.webActor(r)
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.failPage(w, r, fmt.Errorf("%w: your session has ended; sign in again", erg.ErrUnauthorized))
			return
		}
		r = withActor(r, a)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := h.checkOrigin(r); err != nil {
				h.failPage(w, r, err)
				return
			}
			if !p.upload {
				if isMultipart(r) {
					h.failPage(w, r, errMultipart)
					return
				}
				if err := h.checkCSRF(r, a); err != nil {
					h.failPage(w, r, err)
					return
				}
			}
		}
		page(w, r, a)
	}
}

// public runs a state-changing route open to anyone (the sign-in forms):
// only from the shell's own origin, and never with a multipart body.
func (h *Handler) public(page http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.checkOrigin(r); err != nil {
			h.failPage(w, r, err)
			return
		}
		if isMultipart(r) {
			h.failPage(w, r, errMultipart)
			return
		}
		page(w, r)
	}
}

// errMultipart refuses a multipart body where no upload is expected.
var errMultipart = fmt.Errorf("%w: this form takes no upload", errUnsupportedMedia)

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.HasPrefix(strings.ToLower(mt), "multipart/")
}

// localPath keeps a redirect target on this site: it returns p only if p
// is a local path (a single "/" first, no control character or backslash
// anywhere, and no scheme or host when parsed, nor once its escapes are
// decoded), and "/grains" otherwise. Browsers drop tabs and newlines from
// URLs and read a backslash as "/", so "/<tab>/evil.example" would
// otherwise leave the node.
func localPath(p string) string {
	const home = "/grains"
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return home
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f || c == '\\' || (c >= 0x80 && c < 0xa0) {
			return home
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return home
	}
	// The decoded path too: "/%2F/evil" and "/%09/evil" are not sent on.
	if strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, "/\\") {
		return home
	}
	for _, c := range u.Path {
		if c < 0x20 || c == 0x7f {
			return home
		}
	}
	return p
}
