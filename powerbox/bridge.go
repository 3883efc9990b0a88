package powerbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"

	"erg"
	"erg/fed"
)

// The bridge is what a grain's app sees of the powerbox, on a loopback
// port in its sandbox (its address is in the app's ERG_BRIDGE_URL). The
// node serves it on a listener the sandbox's init opened inside the
// grain's network namespace, one per grain, so which grain is asking is
// the node's knowledge, never the app's claim.
//
//	POST /_erg/claim  {"claim": "ergclaim_…", "label": "…"}
//	    -> 200 {"id": "…", "token": "erggrant_…", "target": "…", "role": "…"}
//	ANY  /path        Authorization: Bearer erggrant_…
//	    -> the target grain's answer to /path (below its app's apiPath)
//
// Refusals are JSON {"error": "…", "kind": "…"} with the kind's status.

// BridgeHeader is the header a target grain is told the requesting grain
// in: an id stable for the pair of grains, meaningless elsewhere.
const BridgeHeader = "X-Erg-Via-Grain"

// Bridge serves the bridge of the grain requester.
func (s *Service) Bridge(requester string) http.Handler {
	return &bridge{s: s, requester: requester, proxy: s.bridgeProxy()}
}

type bridge struct {
	s         *Service
	requester string
	proxy     *httputil.ReverseProxy
}

func (b *bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_erg/claim" {
		b.claim(w, r)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		bridgeError(w, errors.New("send a grant: Authorization: Bearer erggrant_… (claim one at POST /_erg/claim)"), http.StatusUnauthorized)
		return
	}
	if dotSegment(r.URL.Path) {
		bridgeError(w, erg.E(erg.Invalid, "the path has a . or .. segment"), 0)
		return
	}
	a, err := b.s.Open(r.Context(), b.requester, strings.TrimSpace(tok))
	if err != nil {
		bridgeError(w, err, 0)
		return
	}
	defer a.Release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.Viewer.Session, cancel)
	defer stop()
	rt, release, err := b.s.cfg.Acquire(ctx, a.Target, a.Role)
	if err != nil {
		bridgeError(w, erg.E(erg.Unavailable, "the grain could not start: %v", err), 0)
		return
	}
	defer release()
	b.proxy.ServeHTTP(w, r.WithContext(&proxied{Context: ctx, a: a, rt: rt}))
}

func (b *bridge) claim(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		bridgeError(w, erg.E(erg.Invalid, "claim with POST"), http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		Claim string `json:"claim"`
		Label string `json:"label"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil {
		bridgeError(w, erg.E(erg.Invalid, `the body must be JSON like {"claim": "ergclaim_…"}`), 0)
		return
	}
	g, err := b.s.Claim(r.Context(), b.requester, req.Claim, req.Label)
	if err != nil {
		bridgeError(w, err, 0)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"id": g.ID, "token": g.Token, "target": g.Target, "role": g.Role})
}

func bridgeError(w http.ResponseWriter, err error, code int) {
	if code == 0 {
		code = map[erg.Kind]int{
			erg.NotFound: 404, erg.Invalid: 400, erg.Forbidden: 403, erg.Unauthenticated: 401,
			erg.TooMany: 429, erg.Unavailable: 502,
		}[erg.KindOf(err)]
		if code == 0 {
			code = 500
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(erg.ErrorReply{Error: err.Error(), Kind: erg.KindOf(err)})
}

// proxied carries a bridge request's grant and transport to the proxy.
type proxied struct {
	context.Context
	a  Access
	rt http.RoundTripper
}

type proxiedKey struct{}

func (p *proxied) Value(key any) any {
	if key == (proxiedKey{}) {
		return p
	}
	return p.Context.Value(key)
}

func proxiedOf(r *http.Request) *proxied { return r.Context().Value(proxiedKey{}).(*proxied) }

type bridgeTransport struct{}

func (bridgeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return proxiedOf(r).rt.RoundTrip(r)
}

func (s *Service) bridgeProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := proxiedOf(pr.In)
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "grain", "grain"
			if p.a.APIPath != "" {
				pr.Out.URL.Path = p.a.APIPath + strings.TrimPrefix(pr.In.URL.Path, "/")
				if pr.In.URL.RawPath != "" {
					pr.Out.URL.RawPath = p.a.APIPath + strings.TrimPrefix(pr.In.URL.RawPath, "/")
				}
			}
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			v := p.a.Viewer
			fed.SetIdentity(pr.Out.Header, v.UserID, v.Username, v.Permissions, v.SessionID)
			pr.Out.Header.Set(BridgeHeader, p.a.Via)
		},
		Transport: bridgeTransport{},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p := proxiedOf(r)
			if p.a.Viewer.Session.Err() != nil {
				bridgeError(w, errBadGrant, 0)
				return
			}
			bridgeError(w, erg.E(erg.Unavailable, "the grain did not answer: %v", err), 0)
		},
	}
}

// dotSegment reports whether a path has a "." or ".." segment.
func dotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
