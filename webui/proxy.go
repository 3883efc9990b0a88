package webui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"erg"
	"erg/accounts"
	"erg/apitokens"
	"erg/backup"
	"erg/fed"
	"erg/friends"
	"erg/grains"
	"erg/install"
	"erg/powerbox"
	"erg/shares"
	"erg/store"
	"erg/tlsforward"
	"erg/tlsnode"
)

// grainCookie holds a grain-origin session. It is set host-only on the
// grain's own origin, so no other grain and not the shell can read it.
const grainCookie = "erg_grain"

// loginPath is where a one-time login URL lands on a grain's origin.
const loginPath = "/_erg/login"

// Options configure the node's web port.
type Options struct {
	// Domain is the parent of the grain origins ("localhost" gives
	// g-<id>.localhost) and the shell's own host name.
	Domain string
	// MaxUpload bounds an uploaded package or backup; default 1 GiB.
	MaxUpload int64
	// MaxWebsockets caps the websockets one user (an anonymous visitor:
	// one client address) may have open through the grain proxy; more
	// are refused with 429. 0 means no cap.
	MaxWebsockets int
	// BodyStall and MinBodyRate guard long request bodies (uploads, and
	// every body sent to a grain): a body may stall no longer than
	// BodyStall and must average MinBodyRate bytes per second, else it
	// is cut. Either 0 means no guard beyond the server's read timeout.
	BodyStall   time.Duration
	MinBodyRate int64
	// Certs is the node's certificate when the web port serves HTTPS
	// (a real domain without --insecure-http); nil otherwise.
	Certs *tlsnode.Manager
	// HTTPSPort is the port HTTPS is served on, where plain HTTP
	// redirects to ("" or "443": the default).
	HTTPSPort string
	// Forward is remote access through friends, when HTTPS is on.
	Forward *tlsforward.Service
}

// Handler serves the node's web port: each grain on its own origin
// (g-<id>.<domain>), everything else as the node's own pages and API.
type Handler struct {
	b          Backend
	acc        *accounts.Service
	st         *store.Service
	fr         *friends.Service
	gr         *grains.Service
	sh         *shares.Service
	in         *install.Installer
	bk         *backup.Service
	log        *slog.Logger
	domain     string
	maxUpload  int64
	body       bodyGuard
	ws         *wsLimiter
	shell      http.Handler
	pageRoutes []pageRoute
	cop        *http.CrossOriginProtection
	limiter    *limiter
	pages      *pages
	updates    *updateCache
	proxy      *httputil.ReverseProxy
	loops      *grainLoops              // grain connections served outside net/http
	csp        atomic.Pointer[cspValue] // the last frame-ancestors policy made
	tok        *apitokens.Service
	pb         *powerbox.Service
	apiProxy   *httputil.ReverseProxy
	certs      *tlsnode.Manager
	httpsPort  string
	forward    *tlsforward.Service
}

// NewHandler returns the handler for the node's web port.
func NewHandler(svc Services, opts Options, log *slog.Logger) *Handler {
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = 1 << 30
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		b: svc.Node, acc: svc.Accounts, st: svc.Store, fr: svc.Friends, gr: svc.Grains, sh: svc.Shares, in: svc.Installer, bk: svc.Backups, log: log, domain: strings.ToLower(opts.Domain), maxUpload: opts.MaxUpload,
		cop: http.NewCrossOriginProtection(), limiter: newLimiter(),
		body: bodyGuard{stall: opts.BodyStall, rate: opts.MinBodyRate}, ws: newWSLimiter(opts.MaxWebsockets),
		certs: opts.Certs, httpsPort: opts.HTTPSPort, forward: opts.Forward,
	}
	h.proxy = h.newGrainProxy()
	h.loops = newGrainLoops(h)
	h.tok, h.apiProxy, h.pb = svc.APITokens, h.newAPIProxy(), svc.Powerbox
	h.pages = newPages()
	h.pageRoutes = h.allPageRoutes()
	h.shell = h.shellRoutes()
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.hsts(w, r)
	if id, ok := h.grainHost(r.Host); ok {
		h.serveGrain(w, r, id)
		return
	}
	if h.apiHost(r.Host) {
		h.serveAPIOrigin(w, r)
		return
	}
	switch h.shellHost(r.Host) {
	case hostShell:
		h.shell.ServeHTTP(w, r)
	case hostIP:
		// One name for the shell keeps one set of cookies, and the links
		// the node hands out use the name.
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, h.shellOrigin(r)+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		fallthrough
	default:
		// A name we were not told to serve may be DNS rebinding: a page
		// elsewhere resolving its own name to this node.
		http.Error(w, "This node answers to "+h.domain+", not "+r.Host+".", http.StatusMisdirectedRequest)
	}
}

type hostKind int

const (
	hostOther hostKind = iota
	hostShell
	hostIP
)

// shellHost tells the node's own name from an IP literal (which no DNS
// rebinding can produce, so it is safe to redirect) and anything else.
func (h *Handler) shellHost(host string) hostKind {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	switch {
	case strings.EqualFold(host, h.domain):
		return hostShell
	case net.ParseIP(host) != nil:
		return hostIP
	}
	return hostOther
}

// GrainOrigin returns the origin a grain is served on, given the scheme
// ("http" or "https") and port ("" for the scheme's default) the node's
// web port serves.
func GrainOrigin(scheme, domain, id, port string) string {
	o := scheme + "://g-" + id + "." + domain
	if port != "" {
		o += ":" + port
	}
	return o
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
	g, viewer, refused := h.admit(r, id)
	if refused != nil {
		refused(w)
		return
	}
	if gc := h.serveAdmitted(w, r, id, g, viewer); gc != nil {
		// The connection is the grain loop's now (grainconn.go): its
		// later requests are read, checked and forwarded there.
		gc.serve()
	}
}

// serveAdmitted forwards an admitted request to its grain. When the
// grain loop takes the connection over to serve this request, it
// returns the loop, to go on with once this request's lease is released.
func (h *Handler) serveAdmitted(w http.ResponseWriter, r *http.Request, id string, g GrainHandle, viewer erg.Viewer) *grainConn {
	ctx, cancel := sessionContext(r.Context(), viewer)
	defer cancel()
	if isUpgrade(r) {
		// A websocket holds a connection here and one to the grain (for a
		// friend's grain, a stream to its node) for as long as it is
		// open: count them by who opened them.
		key := "ip:" + clientIP(r)
		if viewer.Account != "" {
			key = "user:" + viewer.Account
		}
		if !h.ws.acquire(key) {
			http.Error(w, "Too many websockets open; close some tabs and try again.", http.StatusTooManyRequests)
			return nil
		}
		defer h.ws.release(key)
		// Once upgraded it is a websocket's own business how long it
		// stays quiet: free it from the read timeout (the server's
		// hijack does too; this covers the wait for the grain's answer).
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{})
		rc.SetWriteDeadline(time.Time{})
	} else {
		h.body.guard(w, r)
	}
	rt, release, err := g.Acquire(ctx)
	if err != nil {
		h.log.Warn("grain did not start", "grain", id, "err", err)
		http.Error(w, "The grain could not start: "+err.Error(), http.StatusBadGateway)
		return nil
	}
	defer release()
	if rl, ok := rt.(relayer); ok {
		if gc := h.loops.take(w, r, id); gc != nil {
			if gc.relay(ctx, r, rl, viewer) {
				return gc
			}
			gc.close()
			return nil
		}
	}
	if f, ok := rt.(forwarder); ok && !isUpgrade(r) {
		h.forwardGrain(ctx, w, r, f, id, viewer)
		return nil
	}
	p := &proxied{Context: ctx, id: id, viewer: viewer, rt: rt, in: r}
	h.proxy.ServeHTTP(w, r.WithContext(p))
	return nil
}

// forwarder is a grain transport that sends a request and streams its
// answer itself, on the handler's goroutine (forward.Pool, a local
// grain's). Upgrades and friends' grains go through the ReverseProxy.
type forwarder interface {
	Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, answer func(http.Header)) error
}

// forwardGrain is the lean path to a local grain: the same rewrite as the
// ReverseProxy's, made in place on the request the server parsed.
func (h *Handler) forwardGrain(ctx context.Context, w http.ResponseWriter, r *http.Request, f forwarder, id string, viewer erg.Viewer) {
	rewriteForGrain(r, viewer)
	csp := h.frameAncestors(r)
	err := f.Forward(ctx, w, r, func(hdr http.Header) {
		// Only the node's shell may frame a grain.
		hdr.Add("Content-Security-Policy", csp)
	})
	if err != nil {
		h.proxyFailed(w, r, id, viewer, err)
	}
}

// rewriteForGrain makes the request the grain sees, in place: the node's
// word on who is asking, without the grain cookie and without what
// ReverseProxy drops before its Rewrite (a client's word on where the
// request came from).
func rewriteForGrain(r *http.Request, viewer erg.Viewer) {
	setGrainHeaders(r.Header, viewer)
	dropCookie(r, grainCookie)
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(r.Header, k)
	}
}

// frameAncestors is the policy that lets only the shell frame the grain
// r is for. The last one made is kept: it differs only with the port and
// scheme the browser used, which are the same for nearly every request.
func (h *Handler) frameAncestors(r *http.Request) string {
	port := ""
	if i := strings.LastIndexByte(r.Host, ':'); i >= 0 && !strings.Contains(r.Host[i:], "]") {
		port = r.Host[i:]
	}
	tls := r.TLS != nil
	if c := h.csp.Load(); c != nil && c.port == port && c.tls == tls {
		return c.value
	}
	c := &cspValue{port: port, tls: tls, value: "frame-ancestors " + h.shellOrigin(r)}
	h.csp.Store(c)
	return c.value
}

type cspValue struct {
	port  string
	tls   bool
	value string
}

// proxyFailed answers a request the grain did not: 403 when the session
// ended meanwhile, else 502.
func (h *Handler) proxyFailed(w http.ResponseWriter, r *http.Request, id string, viewer erg.Viewer, err error) {
	code, msg := h.grainFailed(r, id, viewer, err)
	http.Error(w, msg, code)
}

// proxied is what the Handler's one ReverseProxy needs to know of the
// request it is serving. It is the request's context, so it costs no
// allocation beyond itself.
type proxied struct {
	context.Context
	id     string
	viewer erg.Viewer
	rt     http.RoundTripper
	in     *http.Request // as it reached serveGrain
}

type proxiedKey struct{}

func (p *proxied) Value(key any) any {
	if key == (proxiedKey{}) {
		return p
	}
	return p.Context.Value(key)
}

func proxiedOf(r *http.Request) *proxied { return r.Context().Value(proxiedKey{}).(*proxied) }

// newGrainProxy returns the one ReverseProxy that serves every grain
// request; what differs per request it reads from the request's context.
func (h *Handler) newGrainProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := proxiedOf(pr.In)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "grain"
			pr.Out.Host = pr.In.Host
			setGrainHeaders(pr.Out.Header, p.viewer)
			dropCookie(pr.Out, grainCookie)
		},
		Transport:  grainTransport{h},
		BufferPool: copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p := proxiedOf(r)
			h.proxyFailed(w, r, p.id, p.viewer, err)
		},
	}
}

// grainTransport sends a request on the transport its grain's Acquire
// returned.
type grainTransport struct{ h *Handler }

func (t grainTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p := proxiedOf(r)
	resp, err := p.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	// Only the node's shell may frame a grain.
	resp.Header.Add("Content-Security-Policy", "frame-ancestors "+t.h.shellOrigin(p.in))
	return resp, nil
}

// copyBuffers saves the proxy a 32 KiB allocation per request.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

func (h *Handler) login(w http.ResponseWriter, r *http.Request, g GrainHandle) {
	token := r.URL.Query().Get("token")
	session, err := "", fmt.Errorf("%w: no token", erg.ErrInvalid)
	if token != "" {
		session, err = g.Redeem(r.Context(), token)
	}
	if err != nil {
		if errors.Is(err, erg.ErrForbidden) || errors.Is(err, erg.ErrNotFound) || errors.Is(err, erg.ErrInvalid) {
			http.Error(w, "This link was already used or has expired. Open the grain again from your node's page.", http.StatusForbidden)
			return
		}
		h.fail(w, r, err)
		return
	}
	c := &http.Cookie{
		Name:     grainCookie,
		Value:    session,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int((30 * 24 * time.Hour).Seconds()),
	}
	if h.secureCookies(r) {
		// Browsers count each g-<id>.localhost as a site of its own, so
		// the grain's frame is cross-site to the shell and a Lax cookie
		// would never reach it. A partitioned cookie is kept under the
		// shell's site: sent to the grain only inside the shell's frame,
		// never when some other site embeds or links to the grain.
		// (Secure works on http://*.localhost, a secure context.) Under a
		// real domain without TLS the shell and its grains are one site,
		// and Lax does.
		c.Secure, c.SameSite, c.Partitioned = true, http.SameSiteNoneMode, true
	}
	http.SetCookie(w, c)
	// Redirecting drops the token from the address bar and from Referer.
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("request failed", "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "Internal error.", http.StatusInternalServerError)
}

// setGrainHeaders replaces every identity header the client sent with the
// node's word on who is asking, under erg's and Sandstorm's names.
// Headers with "_" go too, as nginx and Apache drop them: a CGI, WSGI or
// Rack server would read X-Erg_Permissions as X-Erg-Permissions. The rule
// is fed's, so a friend's request meets the same one on the owner's node.
func setGrainHeaders(hdr http.Header, v erg.Viewer) {
	fed.SetIdentity(hdr, v.UserID, v.Username, v.Permissions, v.SessionID)
}

// dropCookie removes one cookie from a request, keeping the others as
// they were sent (on one Cookie line, as a browser sends them).
func dropCookie(r *http.Request, name string) {
	vs := r.Header["Cookie"]
	found := false
	for _, v := range vs {
		found = found || strings.Contains(v, name)
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, v := range vs {
		for part := range strings.SplitSeq(v, ";") {
			part = strings.TrimSpace(part)
			if k, _, _ := strings.Cut(part, "="); part == "" || strings.TrimSpace(k) == name {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

// shellOrigin is the origin of the node's own pages as the browser sees
// them.
func (h *Handler) shellOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := h.domain
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		host = net.JoinHostPort(host, port)
	}
	return scheme + "://" + host
}
