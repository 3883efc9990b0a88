package webui

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"

	"erg"
)

// What every request to a grain's origin passes before it reaches the
// grain, whether net/http's server read it or the grain loop did.

// admit runs a grain request's checks, in order: the grain exists, the
// request is not its login, it comes from the grain's own pages, and its
// session is good. Refused, it returns how to answer.
func (h *Handler) admit(r *http.Request, id string) (GrainHandle, erg.Viewer, func(http.ResponseWriter)) {
	ctx := r.Context()
	g, err := h.b.ResolveGrain(ctx, id)
	if errors.Is(err, erg.ErrNotFound) {
		return nil, erg.Viewer{}, func(w http.ResponseWriter) {
			http.Error(w, "No such grain on this node.", http.StatusNotFound)
		}
	}
	if err != nil {
		return nil, erg.Viewer{}, failed(h, r, err)
	}
	if r.URL.Path == loginPath {
		return nil, erg.Viewer{}, func(w http.ResponseWriter) { h.login(w, r, g) }
	}
	if crossOrigin(r) {
		// Every grain's frame sits under the shell's site and so shares
		// its partitioned cookie: without this check one grain's script
		// could post, signed in, to the user's other grains.
		return nil, erg.Viewer{}, func(w http.ResponseWriter) {
			http.Error(w, "Only this grain's own pages may change it.", http.StatusForbidden)
		}
	}
	session, ok := cookieValue(r, grainCookie)
	if !ok {
		return nil, erg.Viewer{}, func(w http.ResponseWriter) {
			http.Error(w, "Not signed in to this grain. Open it from your node's page.", http.StatusUnauthorized)
		}
	}
	viewer, err := g.Viewer(ctx, session)
	if err != nil {
		if errors.Is(err, erg.ErrForbidden) || errors.Is(err, erg.ErrNotFound) {
			return nil, erg.Viewer{}, func(w http.ResponseWriter) {
				http.Error(w, "Your access to this grain has ended.", http.StatusForbidden)
			}
		}
		return nil, erg.Viewer{}, failed(h, r, err)
	}
	return g, viewer, nil
}

// failed answers with h.fail. A closure of its own, not one in admit:
// one there would keep admit's err on the heap for every request.
func failed(h *Handler, r *http.Request, err error) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { h.fail(w, r, err) }
}

// cookieValue is r.Cookie(name)'s value, read in place: every request
// to a grain carries its session cookie, and r.Cookie allocates each
// cookie it parses. It reads the Cookie lines as net/http's readCookies
// does (the first cookie of that name whose value is valid, quoted or
// not); past net/http's default bound on cookies it asks r.Cookie, which
// applies it.
func cookieValue(r *http.Request, name string) (string, bool) {
	lines := r.Header["Cookie"]
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookies {
		c, err := r.Cookie(name)
		if err != nil {
			return "", false
		}
		return c.Value, true
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// maxCookies is net/http's default bound on the cookies of a request
// (httpcookiemaxnum): past it, it reads none.
const maxCookies = 3000

// validCookieValue is net/http's test of a cookie's value (RFC 6265's
// cookie-octets, and space and comma, which browsers send).
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// sessionContext is ctx cut when the viewer's session ends. A session
// that loses its access (revoked share, removed user) is cut at once:
// cancelling the request closes the grain's side of a websocket, which
// ends the proxy's copy and closes the browser's. The session's context
// cancels it; no goroutine waits on it. The session's end, when it has
// one, cuts the request too.
func sessionContext(ctx context.Context, viewer erg.Viewer) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if viewer.Expires.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, viewer.Expires)
	}
	if viewer.Session == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(viewer.Session, cancel)
	return ctx, func() { stop(); cancel() }
}

// crossOrigin reports whether r is a state-changing request (any method
// but GET, HEAD and OPTIONS) or a websocket upgrade that a browser says
// comes from a page other than the grain's own origin: an Origin that is
// not the grain's scheme, host and port, or a Sec-Fetch-Site of
// cross-site or same-site. A request with neither header (curl, an old
// browser) passes, as nothing shows it comes from another page.
func crossOrigin(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		if !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") && r.Header.Get("Upgrade") == "" {
			return false
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Values("Origin")
	if len(origin) == 0 {
		return false
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return len(origin) != 1 || !strings.EqualFold(origin[0], scheme+r.Host)
}

// grainFailed is the answer to a request the grain did not answer, on
// either path: 403 when the viewer's session ended meanwhile (which cut
// it), else 502, logged.
func (h *Handler) grainFailed(r *http.Request, id string, viewer erg.Viewer, err error) (int, string) {
	if s := viewer.Session; s != nil && s.Err() != nil {
		return http.StatusForbidden, "Your access to this grain has ended."
	}
	h.log.Warn("grain request failed", "grain", id, "path", r.URL.Path, "err", err)
	return http.StatusBadGateway, "The grain did not answer."
}
