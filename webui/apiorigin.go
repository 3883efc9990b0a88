package webui

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"

	"erg"
)

// The API origin, api.<domain>, is where programs that are not browsers
// reach a grain's API with a grain API token (package apitokens):
//
//	Authorization: Bearer ergapi_…
//	Authorization: Basic base64(anything:ergapi_…)   for DAV clients
//
// The token names its grain; the request's path goes below the app's
// apiPath. Nothing of the shell's or the grains' cookies counts here: the
// origin reads no cookie and passes none on, and drops the ones a grain
// sets, so a page that makes a browser send a request here carries no
// authority but a token it already knows.

// apiHost reports whether host is the node's API origin.
func (h *Handler) apiHost(host string) bool {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	return strings.EqualFold(host, "api."+h.domain)
}

// APIOrigin is the API origin's URL, given the scheme and port ("" for
// the scheme's default) the node's web port serves.
func APIOrigin(scheme, domain, port string) string {
	o := scheme + "://api." + domain
	if port != "" {
		o += ":" + port
	}
	return o
}

// apiOrigin is the API origin as the browser showing r would name it.
func (h *Handler) apiOrigin(r *http.Request) string {
	scheme, host, _ := strings.Cut(h.shellOrigin(r), "://")
	return scheme + "://api." + host
}

// apiCredential reads the token from a Bearer or Basic Authorization
// header (Basic's user name is ignored).
func apiCredential(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
		tok = strings.TrimSpace(tok)
		return tok, tok != ""
	}
	if _, pass, ok := r.BasicAuth(); ok && pass != "" {
		return pass, true
	}
	return "", false
}

// setAPIHeaders marks an answer from the API origin as data, never a page:
// a grain's answer there cannot run script on the origin (where it could
// read other answers) and any site may read it with a token it holds.
func setAPIHeaders(hdr http.Header) {
	hdr.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("Access-Control-Expose-Headers", "*")
	hdr.Del("Set-Cookie")
	hdr.Del("Access-Control-Allow-Credentials")
}

func (h *Handler) serveAPIOrigin(w http.ResponseWriter, r *http.Request) {
	setAPIHeaders(w.Header())
	secret, ok := apiCredential(r)
	if !ok {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			// A browser's CORS preflight carries no credentials.
			hdr := w.Header()
			hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, PROPFIND, PROPPATCH, REPORT, MKCOL, MKCALENDAR, COPY, MOVE, LOCK, UNLOCK")
			hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Depth, Destination, If-Match, If-None-Match, Overwrite")
			hdr.Set("Access-Control-Max-Age", "3600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="erg grain API", charset="UTF-8"`)
		http.Error(w, "Send a grain API token: Authorization: Bearer TOKEN (or Basic auth with the token as the password).", http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	acc, err := h.tok.Authenticate(ctx, clientIP(r), secret)
	switch {
	case errors.Is(err, erg.ErrTooMany):
		w.Header().Set("Retry-After", "5")
		http.Error(w, erg.Message(err), http.StatusTooManyRequests)
		return
	case errors.Is(err, erg.ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="erg grain API", charset="UTF-8"`)
		http.Error(w, erg.Message(err), http.StatusUnauthorized)
		return
	case errors.Is(err, erg.ErrForbidden):
		http.Error(w, erg.Message(err), http.StatusForbidden)
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	if bad := dotSegment(r.URL.Path); bad {
		http.Error(w, "The path has a . or .. segment.", http.StatusBadRequest)
		return
	}
	v := acc.Viewer
	var cancel context.CancelFunc
	if v.Expires.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, v.Expires)
	}
	defer cancel()
	// Revoking the token cuts what is open with it.
	stop := context.AfterFunc(v.Session, cancel)
	defer stop()
	h.body.guard(w, r)
	rt, release, err := h.gr.Acquire(ctx, acc.GrainID)
	if err != nil {
		h.log.Warn("grain did not start", "grain", acc.GrainID, "err", err)
		http.Error(w, "The grain could not start: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer release()
	p := &apiProxied{Context: ctx, id: acc.GrainID, viewer: v, rt: rt, apiPath: acc.APIPath}
	h.apiProxy.ServeHTTP(w, r.WithContext(p))
}

// apiProxied is what the API origin's ReverseProxy needs to know of the
// request it is serving, carried as the request's context.
type apiProxied struct {
	context.Context
	id      string
	viewer  erg.Viewer
	rt      http.RoundTripper
	apiPath string
}

type apiProxiedKey struct{}

func (p *apiProxied) Value(key any) any {
	if key == (apiProxiedKey{}) {
		return p
	}
	return p.Context.Value(key)
}

func apiProxiedOf(r *http.Request) *apiProxied {
	return r.Context().Value(apiProxiedKey{}).(*apiProxied)
}

// dotSegment reports whether a decoded path has a "." or ".." segment,
// which would let a request climb out of the app's apiPath.
func dotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// newAPIProxy is the ReverseProxy of the API origin: the grain proxy's
// transport, with the path put below the app's apiPath and no cookies
// either way.
func (h *Handler) newAPIProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := apiProxiedOf(pr.In)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "grain"
			pr.Out.Host = pr.In.Host
			pr.Out.URL.Path = p.apiPath + strings.TrimPrefix(pr.In.URL.Path, "/")
			if pr.In.URL.RawPath != "" {
				pr.Out.URL.RawPath = p.apiPath + strings.TrimPrefix(pr.In.URL.RawPath, "/")
			}
			pr.Out.Header.Del("Cookie")
			// The token is the node's business; the grain learns the
			// role from the identity headers.
			pr.Out.Header.Del("Authorization")
			setGrainHeaders(pr.Out.Header, p.viewer)
		},
		Transport:  apiTransport{},
		BufferPool: copyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			setAPIHeaders(resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p := apiProxiedOf(r)
			if p.viewer.Session.Err() != nil {
				http.Error(w, "The API token was revoked.", http.StatusUnauthorized)
				return
			}
			h.log.Warn("grain API request failed", "grain", p.id, "path", r.URL.Path, "err", err)
			http.Error(w, "The grain did not answer.", http.StatusBadGateway)
		},
	}
}

// apiTransport sends a request on the transport its grain's Acquire
// returned.
type apiTransport struct{}

func (apiTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return apiProxiedOf(r).rt.RoundTrip(r)
}
