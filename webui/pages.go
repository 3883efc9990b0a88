package webui

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
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
	"size": FormatSize,
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
	Data   any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, page string, d pageData) {
	if a, ok := actorOf(r); ok && d.Me == nil {
		d.Me, d.CSRF = &a.user, a.csrf
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
		{"GET /grains/{id}/delete", h.confirmDeleteGrain, false},
		{"POST /grains/{id}/delete", h.deleteGrain, false},
		{"GET /grains/{id}/backup", h.backupGrain, false},
		{"POST /grains/{id}/shares", h.newShare, false},
		{"POST /shares/{id}/revoke", h.revokeShare, false},
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

func (h *Handler) root(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.webActor(r); ok {
		http.Redirect(w, r, "/grains", http.StatusSeeOther)
		return
	}
	if need, err := h.b.SetupNeeded(r.Context()); err == nil && need {
		h.render(w, r, http.StatusUnauthorized, "welcome", pageData{Title: "Welcome"})
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) setupPage(w http.ResponseWriter, r *http.Request) {
	need, err := h.b.SetupNeeded(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if !need {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	owner, _ := h.b.Owner(r.Context())
	h.render(w, r, http.StatusOK, "setup", pageData{Title: "Set up your node", Data: map[string]string{
		"Token": r.URL.Query().Get("token"), "Username": owner.Username}})
}

func (h *Handler) setup(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	token, username, password := r.PostFormValue("token"), r.PostFormValue("username"), r.PostFormValue("password")
	fail := func(err error) {
		h.render(w, r, statusOf(err), "setup", pageData{Title: "Set up your node", Error: erg.Message(err),
			Data: map[string]string{"Token": token, "Username": username}})
	}
	if password != r.PostFormValue("password2") {
		fail(fmt.Errorf("%w: the two passwords differ", erg.ErrInvalid))
		return
	}
	_, session, err := h.b.Setup(r.Context(), token, username, password)
	if err != nil {
		fail(err)
		return
	}
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.webActor(r); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in", Data: map[string]string{"Next": r.URL.Query().Get("next")}})
}

func (h *Handler) loginPost(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	username, password, next := r.PostFormValue("username"), r.PostFormValue("password"), r.PostFormValue("next")
	data := map[string]string{"Next": next, "Username": username}
	ip := clientIP(r)
	if ok, wait := h.limiter.allow(ip, username); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		h.render(w, r, http.StatusTooManyRequests, "login", pageData{Title: "Sign in", Data: data,
			Error: fmt.Sprintf("Too many failed sign-ins. Try again in %d minutes.", int(wait.Minutes())+1)})
		return
	}
	_, session, err := h.b.Login(r.Context(), username, password)
	if err != nil {
		if errors.Is(err, erg.ErrUnauthorized) {
			// allow has counted the attempt already.
			h.render(w, r, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Data: data, Error: "Wrong username or password."})
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.limiter.succeeded(ip, username)
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, a actor) {
	if c, err := r.Cookie(h.sessionCookieName(r)); err == nil {
		h.b.Logout(r.Context(), c.Value)
	}
	h.clearSessionCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request) {
	inv, err := h.b.InviteInfo(r.Context(), r.PathValue("token"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "invite", pageData{Title: "Join", Data: inv})
}

func (h *Handler) acceptInvite(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	token := r.PathValue("token")
	inv, err := h.b.InviteInfo(r.Context(), token)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		h.render(w, r, http.StatusBadRequest, "invite", pageData{Title: "Join", Data: inv, Error: "The two passwords differ."})
		return
	}
	_, session, err := h.b.AcceptInvite(r.Context(), token, password)
	if err != nil {
		if errors.Is(err, erg.ErrInvalid) {
			h.render(w, r, http.StatusBadRequest, "invite", pageData{Title: "Join", Data: inv, Error: erg.Message(err)})
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

// shellData is what the grain shell page shows.
type shellData struct {
	Grain     erg.Grain
	FrameURL  string
	App       erg.App
	Anonymous bool
	Shares    []erg.Share
	NewShare  *erg.Share
	Users     []erg.User
	Friends   []erg.Friend
	ShareOpen bool
	ShareErr  string
}

func (h *Handler) openShare(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	var who *erg.User
	if a, ok := h.webActor(r); ok {
		who = &a.user
		r = withActor(r, a)
	}
	g, err := h.b.OpenShare(r.Context(), who, token)
	if errors.Is(err, erg.ErrUnauthorized) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/s/"+token), http.StatusSeeOther)
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if who != nil {
		// Signed in: the grain is now in their list, under its own address.
		http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
		return
	}
	app, _ := h.appOf(r, g.AppID)
	app.HasIcon = false // icons are for signed-in users; a visitor gets the letter tile
	h.render(w, r, http.StatusOK, "shell", pageData{Title: g.Title, Data: shellData{Grain: g, FrameURL: g.URL, App: app, Anonymous: true}})
}

func (h *Handler) appOf(r *http.Request, id string) (erg.App, error) {
	apps, err := h.b.Apps(r.Context())
	if err != nil {
		return erg.App{}, err
	}
	for _, a := range apps {
		if a.ID == id {
			return a, nil
		}
	}
	return erg.App{}, fmt.Errorf("%w: no app %q", erg.ErrNotFound, id)
}

func (h *Handler) shellPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderShell(w, r, a, r.PathValue("id"), r.URL.Query().Get("share") != "", nil, "")
}

func (h *Handler) renderShell(w http.ResponseWriter, r *http.Request, a actor, id string, shareOpen bool, newShare *erg.Share, shareErr string) {
	ctx := r.Context()
	g, err := h.b.OpenGrain(ctx, a.user, id)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	d := shellData{Grain: g, FrameURL: g.URL, ShareOpen: shareOpen || newShare != nil || shareErr != "", NewShare: newShare, ShareErr: shareErr}
	d.App, _ = h.appOf(r, g.AppID)
	if g.Mine {
		if d.Shares, err = h.b.Shares(ctx, a.user, id); err != nil {
			h.failPage(w, r, err)
			return
		}
		if fb, ok := h.b.(FriendsBackend); ok {
			d.Friends, _ = fb.Friends(ctx, a.user)
		}
		if a.user.Owner {
			users, _ := h.b.Users(ctx, a.user)
			for _, u := range users {
				if u.ID != a.user.ID {
					d.Users = append(d.Users, u)
				}
			}
		}
	}
	code := http.StatusOK
	if shareErr != "" {
		code = http.StatusBadRequest
	}
	h.render(w, r, code, "shell", pageData{Title: g.Title, Data: d})
}

// grainsData is what the grains page shows.
type grainsData struct {
	Apps   []erg.App
	Mine   []erg.Grain
	Shared []erg.Grain
}

func (h *Handler) grainsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderGrains(w, r, a, http.StatusOK, "", "")
}

func (h *Handler) renderGrains(w http.ResponseWriter, r *http.Request, a actor, code int, notice, errMsg string) {
	gs, err := h.b.Grains(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	apps, err := h.b.Apps(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	d := grainsData{Apps: apps}
	for _, g := range gs {
		if g.Mine {
			d.Mine = append(d.Mine, g)
		} else {
			d.Shared = append(d.Shared, g)
		}
	}
	h.render(w, r, code, "grains", pageData{Title: "Grains", Nav: "grains", Data: d, Notice: notice, Error: errMsg})
}

func (h *Handler) newGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.b.NewGrain(r.Context(), a.user, r.PostFormValue("app"), r.PostFormValue("title"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
}

// multipartUpload reads a form whose first field is the CSRF token and
// whose next part is the file, and returns that part unread: uploads
// stream to the node instead of being parsed into memory or temp files.
func (h *Handler) multipartUpload(w http.ResponseWriter, r *http.Request, a actor, field string) (io.Reader, error) {
	if err := h.checkOrigin(r); err != nil {
		return nil, err
	}
	if r.ContentLength > h.maxUpload {
		return nil, fmt.Errorf("%w: the file is %d MiB; the limit is %d MiB", erg.ErrTooLarge, r.ContentLength>>20, h.maxUpload>>20)
	}
	if !isMultipart(r) {
		return nil, fmt.Errorf("%w: send the file as a multipart form", errUnsupportedMedia)
	}
	h.body.guard(w, r)
	r.Body = http.MaxBytesReader(w, r.Body, h.maxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	csrf, err := mr.NextPart()
	if err != nil || csrf.FormName() != csrfField {
		return nil, fmt.Errorf("%w: the form is out of date; reload the page and try again", erg.ErrForbidden)
	}
	tok, _ := io.ReadAll(io.LimitReader(csrf, 256))
	r.Header.Set(csrfHeader, string(tok))
	if err := h.checkCSRF(r, a); err != nil {
		return nil, err
	}
	var part *multipart.Part
	for {
		part, err = mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("%w: no file was sent", erg.ErrInvalid)
		}
		if part.FormName() == field {
			return part, nil
		}
	}
}

func (h *Handler) restoreGrain(w http.ResponseWriter, r *http.Request, a actor) {
	body, err := h.multipartUpload(w, r, a, "backup")
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	g, err := h.b.RestoreGrain(r.Context(), a.user, body)
	if err != nil {
		err = uploadError(err, h.maxUpload)
		if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrTooLarge) {
			h.renderGrains(w, r, a, statusOf(err), "", "The backup could not be restored: "+erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
}

func (h *Handler) renameGrain(w http.ResponseWriter, r *http.Request, a actor) {
	id := r.PathValue("id")
	if _, err := h.b.RenameGrain(r.Context(), a.user, id, r.PostFormValue("title")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, localPath(r.PostFormValue("back")), http.StatusSeeOther)
}

func (h *Handler) confirmDeleteGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.b.Grain(r.Context(), a.user, r.PathValue("id"))
	if err == nil && !g.Mine {
		err = fmt.Errorf("%w: only its owner can delete a grain", erg.ErrForbidden)
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Delete " + g.Title + "?", Nav: "grains", Data: map[string]string{
		"Question": fmt.Sprintf("Delete “%s” and everything in it?", g.Title),
		"Detail":   "This cannot be undone. Download a backup first if you might want it back.",
		"Action":   "/grains/" + g.ID + "/delete", "Button": "Delete grain", "Cancel": "/grains",
	}})
}

func (h *Handler) deleteGrain(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RemoveGrain(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

func (h *Handler) backupGrain(w http.ResponseWriter, r *http.Request, a actor) {
	serveBackup(w, r, h.b, h.log, a.user, r.PathValue("id"))
}

func (h *Handler) newShare(w http.ResponseWriter, r *http.Request, a actor) {
	id := r.PathValue("id")
	expires, err := parseInt64(r.PostFormValue("expires"))
	if err != nil {
		h.renderShell(w, r, a, id, true, nil, err.Error())
		return
	}
	req := erg.ShareRequest{
		Role: r.PostFormValue("role"), ForUser: r.PostFormValue("user"), Label: r.PostFormValue("label"),
		Anonymous: r.PostFormValue("anonymous") == "on", ExpiresIn: expires,
		Friend: r.PostFormValue("friend"), FriendUser: r.PostFormValue("friend_user"),
	}
	s, err := h.b.NewShare(r.Context(), a.user, id, req)
	if errors.Is(err, erg.ErrInvalid) {
		h.renderShell(w, r, a, id, true, nil, erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderShell(w, r, a, id, true, &s, "")
}

func (h *Handler) revokeShare(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RevokeShare(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	grain := r.PostFormValue("grain")
	if !validGrainID(grain) {
		http.Redirect(w, r, "/grains", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/grains/"+grain+"?share=1", http.StatusSeeOther)
}

func (h *Handler) appsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderApps(w, r, http.StatusOK, "", "")
}

func (h *Handler) renderApps(w http.ResponseWriter, r *http.Request, code int, notice, errMsg string) {
	apps, err := h.b.Apps(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if notice == "" {
		notice = installedNotice(r, apps)
	}
	h.render(w, r, code, "apps", pageData{Title: "Apps", Nav: "apps", Data: map[string]any{"Apps": apps, "MaxUpload": h.maxUpload,
		"Updates": h.appUpdates(r, apps)}, Notice: notice, Error: errMsg})
}

func (h *Handler) installApp(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	body, err := h.multipartUpload(w, r, a, "package")
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	app, err := h.b.InstallPackage(r.Context(), body, nil)
	if err != nil {
		err = uploadError(err, h.maxUpload)
		if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrTooLarge) {
			h.renderApps(w, r, statusOf(err), "", "The package was not installed: "+erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.renderApps(w, r, http.StatusCreated, fmt.Sprintf("Installed %s %s.", app.Name, app.DisplayVersion), "")
}

func (h *Handler) removeApp(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RemoveApp(r.Context(), a.user, r.PathValue("id")); err != nil {
		if errors.Is(err, erg.ErrInvalid) {
			h.renderApps(w, r, http.StatusBadRequest, "", erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/apps", http.StatusSeeOther)
}

func (h *Handler) appIcon(w http.ResponseWriter, r *http.Request, a actor) {
	data, ctype, err := h.b.AppIcon(r.Context(), r.PathValue("id"))
	if err != nil {
		http.Error(w, "No icon.", statusOf(err))
		return
	}
	// An SVG icon is the app's content: it must not run as the shell.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(data)
}

// usersData is what the users page shows.
type usersData struct {
	Users   []erg.User
	Invites []erg.Invite
	New     *erg.Invite
	Grains  []erg.NodeGrain // every grain on the node
}

// FormatSize is n bytes for a person: 512 B, 3.4 KiB, 12 MiB.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	format := "%.1f %ciB"
	if v >= 10 {
		format = "%.0f %ciB"
	}
	return fmt.Sprintf(format, v, "KMGTP"[i])
}

func (h *Handler) usersPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderUsers(w, r, a, http.StatusOK, nil, "")
}

func (h *Handler) renderUsers(w http.ResponseWriter, r *http.Request, a actor, code int, inv *erg.Invite, errMsg string) {
	users, err := h.b.Users(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	invites, err := h.b.Invites(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	grains, err := h.b.AllGrains(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, code, "users", pageData{Title: "Users", Nav: "users", Error: errMsg,
		Data: usersData{Users: users, Invites: invites, New: inv, Grains: grains}})
}

// nodeGrain finds any grain on the node for the owner's pages; anyone
// else is refused.
func (h *Handler) nodeGrain(r *http.Request, a actor, id string) (erg.NodeGrain, error) {
	all, err := h.b.AllGrains(r.Context(), a.user)
	if err != nil {
		return erg.NodeGrain{}, err
	}
	for _, g := range all {
		if g.ID == id {
			return g, nil
		}
	}
	return erg.NodeGrain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
}

// confirmDeleteNodeGrain asks the owner before deleting anyone's grain
// from the users page.
func (h *Handler) confirmDeleteNodeGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.nodeGrain(r, a, r.PathValue("id"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Delete " + g.Title + "?", Nav: "users", Data: map[string]string{
		"Question": fmt.Sprintf("Delete %s’s grain “%s” and everything in it?", g.Owner, g.Title),
		"Detail": fmt.Sprintf("It is a %s grain holding %s. It is stopped if running, and everything shared from it stops working. This cannot be undone.",
			g.AppName, FormatSize(g.Size)),
		"Action": "/users/grains/" + url.PathEscape(g.ID) + "/delete", "Button": "Delete grain", "Cancel": "/users",
	}})
}

func (h *Handler) deleteNodeGrain(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	if err := h.b.RemoveGrain(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (h *Handler) inviteUser(w http.ResponseWriter, r *http.Request, a actor) {
	inv, err := h.b.InviteUser(r.Context(), a.user, r.PostFormValue("username"))
	if errors.Is(err, erg.ErrInvalid) {
		h.renderUsers(w, r, a, http.StatusBadRequest, nil, erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderUsers(w, r, a, http.StatusCreated, &inv, "")
}

func (h *Handler) confirmRemoveUser(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	name := r.PathValue("name")
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Remove " + name + "?", Nav: "users", Data: map[string]string{
		"Question": fmt.Sprintf("Remove the user %s?", name),
		"Detail":   "Their grains are deleted with them, and everything shared with them stops working.",
		"Action":   "/users/" + url.PathEscape(name) + "/remove", "Button": "Remove user", "Cancel": "/users",
	}})
}

func (h *Handler) removeUser(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RemoveUser(r.Context(), a.user, r.PathValue("name")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (h *Handler) cancelInvite(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.CancelInvite(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

// settingsData is what the settings page shows.
type settingsData struct {
	Tokens []erg.APIToken
	New    *erg.APIToken
}

func (h *Handler) settingsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderSettings(w, r, a, http.StatusOK, nil, "", "")
}

func (h *Handler) renderSettings(w http.ResponseWriter, r *http.Request, a actor, code int, tok *erg.APIToken, notice, errMsg string) {
	tokens, err := h.b.APITokens(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, code, "settings", pageData{Title: "Settings", Nav: "settings", Data: settingsData{Tokens: tokens, New: tok},
		Notice: notice, Error: errMsg})
}

func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request, a actor) {
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", "The two new passwords differ.")
		return
	}
	session, err := h.b.ChangePassword(r.Context(), a.user, r.PostFormValue("current"), password)
	if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrForbidden) {
		h.renderSettings(w, r, a, statusOf(err), nil, "", erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.setSessionCookie(w, r, session)
	// The old session, and with it the page's CSRF token, is gone.
	u, csrf, err := h.b.WebSession(r.Context(), session)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	r = withActor(r, actor{user: u, csrf: csrf})
	h.renderSettings(w, r, actor{user: u, csrf: csrf}, http.StatusOK, nil, "Your password is changed; other devices are signed out.", "")
}

func (h *Handler) newToken(w http.ResponseWriter, r *http.Request, a actor) {
	tok, err := h.b.NewAPIToken(r.Context(), a.user, r.PostFormValue("label"))
	if errors.Is(err, erg.ErrInvalid) {
		h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderSettings(w, r, a, http.StatusCreated, &tok, "", "")
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RemoveAPIToken(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/settings", http.StatusSeeOther)
}
