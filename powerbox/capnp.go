package powerbox

import (
	"context"
	"net"
	"net/http"
	"path"
	"strings"

	"capnproto.org/go/capnp/v3"

	"erg/fed"
)

// ServeCapnp serves the Cap'n Proto Bridge (fed/grain.capnp) of the grain
// requester on c, a connection to its bridge socket, until it closes.
func (s *Service) ServeCapnp(requester string, c net.Conn) {
	conn := fed.NewConn(c, capnp.Client(fed.NewBridge(&capnpBridge{s: s, requester: requester})))
	<-conn.Done()
}

// capnpBridge is the powerbox as one grain's Bridge capability sees it.
type capnpBridge struct {
	s         *Service
	requester string
}

func (b *capnpBridge) Claim(ctx context.Context, claim, label string) (string, string, error) {
	g, err := b.s.Claim(ctx, b.requester, claim, label)
	return g.Token, g.ID, err
}

// Open leases the grant's target for as long as the Grain capability it
// becomes is held; each request on it is checked again (Open), as the
// HTTP bridge's are.
func (b *capnpBridge) Open(ctx context.Context, grant string) (http.RoundTripper, func(*http.Request), context.Context, func(), error) {
	a, err := b.s.Open(ctx, b.requester, grant)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	rt, release, err := b.s.cfg.Acquire(ctx, a.Target, a.Role)
	if err != nil {
		a.Release()
		return nil, nil, nil, nil, err
	}
	check := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		again, err := b.s.Open(req.Context(), b.requester, grant)
		if err != nil {
			return nil, err
		}
		again.Release() // a holds the grant's context open meanwhile
		return rt.RoundTrip(req)
	})
	prepare := func(req *http.Request) {
		if a.APIPath != "" {
			p := req.URL.Path
			if dotSegment(p) {
				p = path.Clean("/" + p) // it stays below apiPath
			}
			req.URL.Path = a.APIPath + strings.TrimPrefix(p, "/")
			req.URL.RawPath = ""
		}
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
		v := a.Viewer
		fed.SetIdentity(req.Header, v.UserID, v.Username, v.Permissions, v.SessionID)
		req.Header.Set(BridgeHeader, a.Via)
	}
	return check, prepare, a.Viewer.Session, func() { release(); a.Release() }, nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
