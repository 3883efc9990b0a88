package webui

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// grainCookie holds a grain-origin session. It is set host-only on the
// grain's own origin, so no other grain and not the shell can read it.
const grainCookie = "erg_grain"

// loginPath is where a one-time login URL lands on a grain's origin.
const loginPath = "/_erg/login"

// Handler serves the node's web port: each grain on its own origin
// (g-<id>.<domain>), everything else as the node's own pages.
type Handler struct {
	b      Backend
	log    *slog.Logger
	domain string
}

// NewHandler returns the handler for the node's web port. domain is the
// parent of the grain origins ("localhost" gives g-<id>.localhost).
func NewHandler(b Backend, domain string, log *slog.Logger) *Handler {
	return &Handler{b: b, log: log, domain: strings.ToLower(domain)}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id, ok := h.grainHost(r.Host); ok {
		h.serveGrain(w, r, id)
		return
	}
	h.home(w, r)
}

// GrainOrigin returns the origin a grain is served on, given the node's
// listen port.
func GrainOrigin(domain, id, port string) string {
	return "http://g-" + id + "." + domain + ":" + port
}

// grainHost extracts the grain id from a Host header of the form
// g-<id>.<domain>[:port].
func (h *Handler) grainHost(host string) (string, bool) {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.ToLower(host)
	label, rest, ok := strings.Cut(host, ".")
	if !ok || rest != h.domain || !strings.HasPrefix(label, "g-") {
		return "", false
	}
	id := label[2:]
	if !validGrainID(id) {
		return "", false
	}
	return id, true
}

func validGrainID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (h *Handler) serveGrain(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	exists, err := h.b.GrainExists(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !exists {
		http.Error(w, "No such grain on this node.", http.StatusNotFound)
		return
	}
	if r.URL.Path == loginPath {
		h.login(w, r, id)
		return
	}
	c, err := r.Cookie(grainCookie)
	if err != nil {
		http.Error(w, "Not signed in to this grain. Open it from your node (erg grain open "+id+").", http.StatusUnauthorized)
		return
	}
	viewer, err := h.b.GrainViewer(ctx, id, c.Value)
	if err != nil {
		if errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) {
			http.Error(w, "Your session for this grain has ended. Open it again from your node.", http.StatusForbidden)
			return
		}
		h.fail(w, r, err)
		return
	}
	rt, release, err := h.b.AcquireGrain(ctx, id)
	if err != nil {
		h.log.Warn("grain did not start", "grain", id, "err", err)
		http.Error(w, "The grain could not start: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer release()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "grain"
			pr.Out.Host = pr.In.Host
			setGrainHeaders(pr.Out.Header, viewer)
			dropCookie(pr.Out, grainCookie)
		},
		Transport:  rt,
		BufferPool: copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.log.Warn("grain request failed", "grain", id, "path", r.URL.Path, "err", err)
			http.Error(w, "The grain did not answer.", http.StatusBadGateway)
		},
	}
	proxy.ServeHTTP(w, r)
}

// copyBuffers saves the proxy a 32 KiB allocation per request.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

func (h *Handler) login(w http.ResponseWriter, r *http.Request, id string) {
	token := r.URL.Query().Get("token")
	session, err := h.b.RedeemLoginToken(r.Context(), id, token)
	if err != nil {
		if errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			http.Error(w, "This link was already used or has expired. Get a new one with: erg grain open "+id, http.StatusForbidden)
			return
		}
		h.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     grainCookie,
		Value:    session,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int((30 * 24 * time.Hour).Seconds()),
	})
	// Redirecting drops the token from the address bar and from Referer.
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("request failed", "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "Internal error.", http.StatusInternalServerError)
}

// setGrainHeaders replaces every identity header the client sent with the
// node's word on who is asking, under erg's and Sandstorm's names.
func setGrainHeaders(hdr http.Header, v Viewer) {
	for name := range hdr {
		if isIdentityHeader(name) {
			delete(hdr, name)
		}
	}
	perms := strings.Join(v.Permissions, ",")
	for _, prefix := range []string{"X-Erg-", "X-Sandstorm-"} {
		hdr.Set(prefix+"User-Id", v.UserID)
		hdr.Set(prefix+"Username", v.Username)
		hdr.Set(prefix+"Permissions", perms)
		hdr.Set(prefix+"Session-Id", v.SessionID)
	}
}

func isIdentityHeader(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "x-erg-") || strings.HasPrefix(n, "x-sandstorm-")
}

// dropCookie removes one cookie from a request, keeping the others.
func dropCookie(r *http.Request, name string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	s, err := h.b.Status(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>erg</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}</style>
<h1>erg node</h1><p>%d apps installed, %d grains, %d running.</p>
<p>Create a grain with <code>erg grain new notes</code> and open the link it prints.</p>`,
		s.Apps, s.Grains, s.Running)
}
