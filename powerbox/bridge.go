package powerbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

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

// keepOpen is how long the HTTP face keeps a grant's Grain open after its
// last request, so that a burst of requests opens it once. Each request
// on it is checked again all the same, and it is revoked when the grant
// stops holding; holding it keeps the target leased that much longer.
const keepOpen = 5 * time.Second

// Bridge serves the bridge of the grain requester.
func (s *Service) Bridge(requester string) http.Handler {
	return &bridge{b: &capnpBridge{s: s, requester: requester}, open: map[string]*openGrain{}}
}

type bridge struct {
	b *capnpBridge

	mu   sync.Mutex
	open map[string]*openGrain // by grant
}

// openGrain is a grant's Grain the HTTP face holds open.
type openGrain struct {
	t     *fed.Transport
	users int         // requests on it now
	idle  *time.Timer // releases it keepOpen after the last
	gone  bool        // no longer in open: released when unused
}

// grain returns the open Grain of a grant, opening it if there is none;
// done gives it back, with whether it went stale.
func (b *bridge) grain(ctx context.Context, grant string) (*openGrain, error) {
	b.mu.Lock()
	if og := b.open[grant]; og != nil {
		og.users++
		if og.idle != nil {
			og.idle.Stop() // one that fired meanwhile finds it in use
		}
		b.mu.Unlock()
		return og, nil
	}
	b.mu.Unlock()
	// A capability of its own for the open: nothing tells this handler
	// when the grain's sandbox is gone, so nothing may outlive its use.
	bc := fed.NewBridge(b.b)
	defer bc.Release()
	g, err := fed.OpenGrant(ctx, bc, grant)
	if err != nil {
		return nil, err
	}
	og := &openGrain{t: &fed.Transport{Grain: g}, users: 1}
	b.mu.Lock()
	defer b.mu.Unlock()
	if other := b.open[grant]; other != nil {
		og.gone = true // two opened at once: keep the first for later
	} else {
		b.open[grant] = og
	}
	return og, nil
}

func (b *bridge) done(grant string, og *openGrain, stale bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if stale && !og.gone {
		og.gone = true
		delete(b.open, grant)
	}
	if og.users--; og.users > 0 {
		return
	}
	if og.gone {
		og.t.Grain.Release()
		return
	}
	og.idle = time.AfterFunc(keepOpen, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if og.users == 0 && !og.gone {
			og.gone = true
			delete(b.open, grant)
			og.t.Grain.Release()
		}
	})
}

func (b *bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_erg/claim" {
		bc := fed.NewBridge(b.b)
		defer bc.Release()
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
	grant := strings.TrimSpace(tok)
	og, err := b.grain(r.Context(), grant)
	if err != nil {
		bridgeError(w, err, 0)
		return
	}
	u := &use{b: b, grant: grant, og: og}
	defer func() {
		if u.og != nil { // nil: given up, and no other opened
			b.done(grant, u.og, u.stale)
		}
	}()
	bridgeProxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grainKey{}, u)))
}

// use is one request's use of an open Grain.
type use struct {
	b     *bridge
	grant string
	og    *openGrain
	stale bool // the Grain ended: give it up
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

// statusOf is the status a refusal of err's kind is answered with: the
// JSON API's (erg.Kind.HTTPStatus), but 502 for Unavailable. The bridge
// is a gateway to the target grain, and Unavailable here is the target
// not answering, starting again under the request or not reachable (a
// friend's node away): HTTP's 502, as the node's grain proxy and API
// origin answer the same failures. The body's kind tells it from a 502
// the target app gives, which is an answer like any other.
func statusOf(err error) int {
	if k := erg.KindOf(err); k != erg.Unavailable {
		return k.HTTPStatus()
	}
	return http.StatusBadGateway
}

func bridgeError(w http.ResponseWriter, err error, code int) {
	code, body := errorReply(err, code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(body)
}

// errorReply is the one error answer of both the bridge's faces, the HTTP
// one and a Grain's refusal: JSON {"error", "kind"} with the kind's
// status, or with code if it is not 0.
func errorReply(err error, code int) (int, []byte) {
	if code == 0 {
		code = statusOf(err)
	}
	body, _ := json.Marshal(erg.ErrorReply{Error: err.Error(), Kind: erg.KindOf(err)})
	return code, append(body, '\n')
}

// grainKey carries a bridge request's transport, over the Grain its grant
// opened, to the proxy.
type grainKey struct{}

type grainTransport struct{}

func (grainTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u := r.Context().Value(grainKey{}).(*use)
	resp, err := u.og.t.RoundTrip(r)
	if err == nil {
		return resp, nil // any status: the target's answer
	}
	u.stale = true
	if !errors.Is(err, fed.ErrRevoked) {
		return nil, err
	}
	// The Grain ended, since it was opened for an earlier request: its
	// grant stopped holding, or the target failed under it (capnp.go).
	// Opening the grant again says which, and leases the target anew.
	u.b.done(u.grant, u.og, true)
	u.og = nil
	og, oerr := u.b.grain(r.Context(), u.grant)
	if oerr != nil {
		return nil, refused{oerr}
	}
	u.og, u.stale = og, false
	if r.Body != nil && r.Body != http.NoBody {
		// Not sent, but perhaps read in part: the app sends it again.
		return nil, erg.E(erg.Unavailable, "the target grain started again; send the request again")
	}
	resp, err = og.t.RoundTrip(r)
	u.stale = err != nil
	return resp, err
}

// refused is an open of a grant refused: its refusal is the answer.
type refused struct{ error }

func (r refused) Unwrap() error { return r.error }

// bridgeProxy streams an exchange, websockets included, through the
// Grain; the Grain's side (capnp.go) sets the path, who is asking and
// what the answer may carry.
var bridgeProxy = &httputil.ReverseProxy{
	Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "grain", "grain"
	},
	Transport: grainTransport{},
	ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		var no refused
		switch {
		case errors.As(err, &no):
			bridgeError(w, no.error, 0)
			return
		case erg.KindOf(err) == erg.Unavailable:
			bridgeError(w, err, 0)
			return
		case errors.Is(err, fed.ErrRevoked):
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
