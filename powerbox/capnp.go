package powerbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync/atomic"

	"capnproto.org/go/capnp/v3"

	"erg"
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

func (b *capnpBridge) Claim(ctx context.Context, claim, label string) (erg.Grant, error) {
	return b.s.Claim(ctx, b.requester, claim, label)
}

// Open leases the grant's target for as long as the Grain capability it
// becomes is held. Each request on it but the first is checked again
// (Open): the first follows the check the open itself made, which is
// all an HTTP request on the bridge, one open and one request, costs.
// Between requests the watch checks the grant twice a second, as it does
// every grant in use, and revokes the capability when it stops holding.
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
	// The Grain ends with the grant, or when the target fails under it
	// (its sandbox went): the lease is on that sandbox, and a new open
	// starts the grain again. An answer, whatever its status, ends nothing.
	stopped, end := context.WithCancel(a.Viewer.Session)
	var first atomic.Bool
	first.Store(true)
	check := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if !first.Swap(false) {
			// The check runs to its end though the exchange be cut
			// meanwhile (the watch found the grant stopped): its answer,
			// not the cut's "context canceled", is what the app is told.
			again, err := b.s.Open(context.WithoutCancel(req.Context()), b.requester, grant)
			if err != nil {
				// Answered, not failed: the app learns why, with the
				// status the HTTP face gives a refused open.
				return refusal(req, err), nil
			}
			again.Release() // a holds the grant's context open meanwhile
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			if req.Context().Err() == nil { // not the asker's giving up
				end()
			}
			return nil, err
		}
		// A grain sets no cookie in another's name.
		resp.Header.Del("Set-Cookie")
		return resp, nil
	})
	prepare := func(req *http.Request) {
		if a.APIPath != "" {
			p, raw := req.URL.Path, req.URL.RawPath
			if dotSegment(p) {
				p, raw = path.Clean("/"+p), "" // it stays below apiPath
			}
			req.URL.Path = a.APIPath + strings.TrimPrefix(p, "/")
			req.URL.RawPath = ""
			if raw != "" {
				req.URL.RawPath = a.APIPath + strings.TrimPrefix(raw, "/")
			}
		}
		req.Host = "grain"
		// Nothing of the requesting grain's credentials, cookies or
		// claims about where it is passes on.
		for _, h := range []string{"Authorization", "Cookie", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			req.Header.Del(h)
		}
		v := a.Viewer
		fed.SetIdentity(req.Header, v.UserID, v.Username, v.Permissions, v.SessionID)
		req.Header.Set(BridgeHeader, a.Via)
	}
	b.s.opens.Add(1)
	return check, prepare, stopped, func() { end(); release(); a.Release() }, nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// refusal is the answer to a request on an open Grain whose grant no
// longer holds: the reply the HTTP face writes for a refused open.
func refusal(req *http.Request, err error) *http.Response {
	code, body := errorReply(err, 0)
	return &http.Response{
		StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
