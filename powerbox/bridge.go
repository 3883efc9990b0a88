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
//
// This HTTP face is a client of the grain's Cap'n Proto Bridge (capnp.go),
// the one an app may also reach on its bridge socket: a claim is a claim
// call, and each request an open and an exchange on the Grain it gives,
// so what a grant may do, and what the target is told, is decided in one
// place for both.

// BridgeHeader is the header a target grain is told the requesting grain
// in: an id stable for the pair of grains, meaningless elsewhere.
const BridgeHeader = "X-Erg-Via-Grain"

// Bridge serves the bridge of the grain requester.
func (s *Service) Bridge(requester string) http.Handler {
	return &bridge{b: &capnpBridge{s: s, requester: requester}}
}

type bridge struct{ b *capnpBridge }

func (b *bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A capability of its own for each request: nothing outlives it, as
	// nothing tells this handler when the grain's sandbox is gone.
	bc := fed.NewBridge(b.b)
	defer bc.Release()
	if r.URL.Path == "/_erg/claim" {
		claim(w, r, bc)
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
	g, err := fed.OpenGrant(r.Context(), bc, strings.TrimSpace(tok))
	if err != nil {
		bridgeError(w, err, 0)
		return
	}
	defer g.Release()
	bridgeProxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grainKey{}, &fed.Transport{Grain: g})))
}

func claim(w http.ResponseWriter, r *http.Request, bc fed.Bridge) {
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
	g, err := fed.ClaimGrant(r.Context(), bc, req.Claim, req.Label)
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

// grainKey carries a bridge request's transport, over the Grain its grant
// opened, to the proxy.
type grainKey struct{}

type grainTransport struct{}

func (grainTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return r.Context().Value(grainKey{}).(*fed.Transport).RoundTrip(r)
}

// bridgeProxy streams an exchange, websockets included, through the
// Grain; the Grain's side (capnp.go) sets the path, who is asking and
// what the answer may carry.
var bridgeProxy = &httputil.ReverseProxy{
	Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "grain", "grain"
	},
	Transport: grainTransport{},
	ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, fed.ErrRevoked) {
			bridgeError(w, errBadGrant, 0)
			return
		}
		bridgeError(w, erg.E(erg.Unavailable, "the grain did not answer: %v", err), 0)
	},
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
