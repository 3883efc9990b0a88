package webui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"erg"
)

// sessionCookie holds a sign-in to the node's pages. It is host-only on
// the shell's host, so grain origins (subdomains) never receive it.
const sessionCookie = "erg_session"

// secureCookies reports whether the browser treats the shell's origin as
// secure: over TLS, or on localhost, which browsers count as secure. Then
// the session cookie is Secure and named __Host-erg_session: a grain, being
// a subdomain, could otherwise plant an erg_session cookie for the parent
// domain and so sign the owner out or in as someone else; browsers refuse
// any __Host- cookie that names a domain.
func (h *Handler) secureCookies(r *http.Request) bool {
	return r.TLS != nil || h.domain == "localhost" || strings.HasSuffix(h.domain, ".localhost")
}

func (h *Handler) sessionCookieName(r *http.Request) string {
	if h.secureCookies(r) {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

// csrfField and csrfHeader carry the session's CSRF token in forms and in
// API calls made by the pages' scripts.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

type ctxKey int

const actorKey ctxKey = 0

// actor is who a request acts for, and how they proved it.
type actor struct {
	user erg.User
	csrf string // "" when not signed in through a web session
}

func withActor(r *http.Request, a actor) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), actorKey, a))
}

func actorOf(r *http.Request) (actor, bool) {
	a, ok := r.Context().Value(actorKey).(actor)
	return a, ok
}

// webActor finds the signed-in user of a shell request, if any.
func (h *Handler) webActor(r *http.Request) (actor, bool) {
	c, err := r.Cookie(h.sessionCookieName(r))
	if err != nil || c.Value == "" {
		return actor{}, false
	}
	u, csrf, err := h.acc.WebSession(r.Context(), c.Value)
	if err != nil {
		if !errors.Is(err, erg.ErrUnauthorized) {
			h.log.Error("session lookup", "err", err)
		}
		return actor{}, false
	}
	return actor{user: u, csrf: csrf}, true
}

func (h *Handler) setSessionCookie(w http.ResponseWriter, r *http.Request, session string) {
	http.SetCookie(w, &http.Cookie{
		Name:     h.sessionCookieName(r),
		Value:    session,
		Path:     "/",
		HttpOnly: true,
		Secure:   h.secureCookies(r),
		// Lax, not Strict: a sharing link opened from a mail or chat must
		// arrive signed in. Lax alone does not stop a grain (a same-site
		// subdomain) from posting here; checkCSRF does.
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int((14 * 24 * time.Hour).Seconds()),
	})
}

func (h *Handler) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: h.sessionCookieName(r), Value: "", Path: "/", HttpOnly: true, Secure: h.secureCookies(r),
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// checkOrigin refuses a state-changing request sent by another origin.
// Every grain is a subdomain of the shell, so SameSite cookies do not tell
// a grain's forms from the shell's; the browser's Sec-Fetch-Site (or
// Origin) header does, and http.CrossOriginProtection checks it.
func (h *Handler) checkOrigin(r *http.Request) error {
	if err := h.cop.Check(r); err != nil {
		return fmt.Errorf("%w: cross-origin request refused", erg.ErrForbidden)
	}
	return nil
}

// checkCSRF also requires the session's token, which no other origin can
// read: it protects browsers too old to send Sec-Fetch-Site or Origin. The
// token comes in the X-CSRF-Token header or a urlencoded form's field;
// callers refuse multipart bodies before this (signedIn), so the form
// parsed here is never a multipart one.
func (h *Handler) checkCSRF(r *http.Request, a actor) error {
	got := r.Header.Get(csrfHeader)
	if got == "" && !isMultipart(r) {
		got = r.PostFormValue(csrfField)
	}
	return h.checkToken(r, a, got)
}

// checkCSRFHeader is checkCSRF for the JSON API: the token only in the
// X-CSRF-Token header, which no other origin can set without a CORS
// preflight the node never answers, and never from the body, whatever
// its content type.
func (h *Handler) checkCSRFHeader(r *http.Request, a actor) error {
	return h.checkToken(r, a, r.Header.Get(csrfHeader))
}

func (h *Handler) checkToken(r *http.Request, a actor, got string) error {
	if err := h.checkOrigin(r); err != nil {
		return err
	}
	if a.csrf == "" || subtle.ConstantTimeCompare([]byte(got), []byte(a.csrf)) != 1 {
		return fmt.Errorf("%w: the form is out of date or was sent from elsewhere; reload the page and try again", erg.ErrForbidden)
	}
	return nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter slows password guessing: per client address and username, and
// per address alone so that trying many names does not help.
type limiter struct {
	mu      sync.Mutex
	entries map[string]*limitEntry
	now     func() time.Time
}

type limitEntry struct {
	fails int
	since time.Time
}

const (
	limitWindow     = 15 * time.Minute
	limitPerAccount = 5
	limitPerAddress = 30
	limitMaxEntries = 10_000
)

func newLimiter() *limiter { return &limiter{entries: map[string]*limitEntry{}, now: time.Now} }

func limitKeys(ip, username string) (account, address string) {
	return ip + "\x00" + strings.ToLower(strings.TrimSpace(username)), ip
}

// allow reports whether a login attempt may go ahead, and if not, when
// the caller may try again. An attempt it allows is counted at once, under
// the lock, before the password is checked: concurrent guesses cannot all
// pass the check before any of them is recorded. A success clears it
// (succeeded). An attempt that fails for another reason (the backend
// erred) is not given back: the caller may have made it fail, say by
// hanging up, after its password was checked.
func (l *limiter) allow(ip, username string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	acc, addr := limitKeys(ip, username)
	for _, k := range []struct {
		key string
		max int
	}{{acc, limitPerAccount}, {addr, limitPerAddress}} {
		e := l.entries[k.key]
		if e == nil {
			continue
		}
		if now.Sub(e.since) >= limitWindow {
			delete(l.entries, k.key)
			continue
		}
		if e.fails >= k.max {
			return false, limitWindow - now.Sub(e.since)
		}
	}
	if len(l.entries) >= limitMaxEntries {
		for k, e := range l.entries {
			if now.Sub(e.since) >= limitWindow {
				delete(l.entries, k)
			}
		}
	}
	for _, key := range []string{acc, addr} {
		e := l.entries[key]
		if e == nil {
			e = &limitEntry{since: now}
			l.entries[key] = e
		}
		e.fails++
	}
	return true, 0
}

// succeeded clears the account's failures and gives back the address the
// attempt that succeeded.
func (l *limiter) succeeded(ip, username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc, addr := limitKeys(ip, username)
	delete(l.entries, acc)
	if e := l.entries[addr]; e != nil && e.fails > 0 {
		e.fails--
	}
}
