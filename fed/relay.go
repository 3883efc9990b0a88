// Package fed is how nodes use each other's grains. grain.capnp holds the
// Cap'n Proto interfaces a node serves its friends' nodes; this package
// relays HTTP exchanges, websockets included, over them: GrainServer on the
// owner's node turns Grain calls into requests to the grain, and Transport
// on the friend's node is an http.RoundTripper that makes those calls, so
// the friend's node can put the grain behind its own proxy like a local one.
//
// Everything that arrives over the wire is bounded and checked before it
// becomes an HTTP request: method, path, header names and values, their
// count and size. Nothing a remote node sends can set who is asking: the
// owner's node strips identity headers and sets them itself.
package fed

//go:generate sh -c "capnp compile -I $(go env GOMODCACHE)/capnproto.org/go/capnp/v3@v3.1.0-alpha.2/std -ogo grain.capnp"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/flowcontrol"
	"golang.org/x/net/http/httpguts"

	"erg"
)

// Limits on what one exchange may carry in its head.
const (
	maxMethod      = 32
	maxPath        = 8 << 10
	maxHeaders     = 128
	maxHeaderBytes = 64 << 10
	// chunkSize is the most one write carries; flowWindow the bytes a
	// sender keeps in flight on one stream before waiting for the reader.
	chunkSize  = 256 << 10
	flowWindow = 4 << 20
)

// ErrRevoked is what a Grain call fails with once its share is revoked:
// its kind is Forbidden, and Transport reports a request refused with
// that kind as an error wrapping ErrRevoked. (Older nodes find its text in
// an exception's: the text stays.)
var ErrRevoked error = &erg.Error{Kind: erg.Forbidden, Msg: "the share was revoked"}

// GrainServer serves the Grain interface: each exchange is sent through RT,
// a transport into the grain, after Prepare has set who is asking. Revoke
// ends every exchange under way and fails every later one.
type GrainServer struct {
	rt      http.RoundTripper
	prepare func(*http.Request)

	ctx    context.Context
	cancel context.CancelCauseFunc

	// OnRelease, if set, runs when the capability from Client is released
	// by every holder, as when the connection to the friend's node drops.
	OnRelease func()
}

// Shutdown implements server.Shutdowner.
func (s *GrainServer) Shutdown() {
	if s.OnRelease != nil {
		s.OnRelease()
	}
}

// NewGrainServer returns a server relaying into rt. prepare is called on
// every request after the relay has removed hop-by-hop and identity
// headers; it sets the identity headers for the share's user and role.
func NewGrainServer(rt http.RoundTripper, prepare func(*http.Request)) *GrainServer {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &GrainServer{rt: rt, prepare: prepare, ctx: ctx, cancel: cancel}
}

// Client returns a new capability for s; the caller releases it.
func (s *GrainServer) Client() Grain { return Grain_ServerToClient(s) }

// Revoke cuts off every exchange, websockets included, at once.
func (s *GrainServer) Revoke() { s.cancel(ErrRevoked) }

// Revoked reports whether Revoke was called.
func (s *GrainServer) Revoked() bool { return s.ctx.Err() != nil }

// Request implements Grain_Server.
func (s *GrainServer) Request(_ context.Context, call Grain_request) error {
	req, err := s.request(call.Args())
	if err != nil {
		if writeFailure(call.Args().Kinds(), err, func() (Failure, error) {
			res, err := call.AllocResults()
			if err != nil {
				return Failure{}, err
			}
			return res.NewFailure()
		}) {
			return nil
		}
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	// The body stream carries the request body, or an upgrade's bytes
	// after the 101 (never both). A request with neither gets none: one
	// capability fewer to export and release.
	upgrade := req.Header.Get("Upgrade") != ""
	pr := newBufPipe(flowWindow)
	if req.ContentLength != 0 || upgrade {
		if err := res.SetBody(ByteStream_ServerToClient(&pipeStream{w: pr})); err != nil {
			return err
		}
	}
	if req.ContentLength == 0 || upgrade {
		req.Body = http.NoBody
	} else {
		req.Body = pr
	}
	responder := call.Args().Response().AddRef()
	if req.Body == http.NoBody && !upgrade {
		// Nothing more comes from the friend for this exchange, so its
		// answer may go in this call's return. Other calls on the grain
		// proceed meanwhile.
		call.Go()
		s.exchange(req, pr, responder, &res)
		return nil
	}
	go s.exchange(req, pr, responder, nil)
	return nil
}

// request reads a call's request, refusing it once the share is revoked.
func (s *GrainServer) request(args Grain_request_Params) (*http.Request, error) {
	if s.ctx.Err() != nil {
		return nil, ErrRevoked
	}
	head, err := args.Head()
	if err != nil {
		return nil, erg.E(erg.Invalid, "bad request: %v", err)
	}
	req, err := s.newRequest(head)
	if err != nil {
		return nil, erg.E(erg.Invalid, "bad request: %v", err)
	}
	return req, nil
}

func (s *GrainServer) newRequest(head RequestHead) (*http.Request, error) {
	method, err := head.Method()
	if err != nil {
		return nil, err
	}
	if len(method) == 0 || len(method) > maxMethod || strings.IndexFunc(method, func(r rune) bool { return !httpguts.IsTokenRune(r) }) >= 0 {
		return nil, fmt.Errorf("invalid method %q", method)
	}
	path, err := head.Path()
	if err != nil {
		return nil, err
	}
	if len(path) > maxPath || !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		return nil, errors.New("the path must start with a single / and be at most 8 KiB")
	}
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return nil, fmt.Errorf("invalid path %q", path)
	}
	list, err := head.Headers()
	if err != nil {
		return nil, err
	}
	h, err := readHeaders(list)
	if err != nil {
		return nil, err
	}
	cleanHeaders(h)
	StripClientHeaders(h)
	n := head.ContentLength()
	if n < -1 {
		return nil, errors.New("invalid content length")
	}
	u.Scheme, u.Host = "http", "grain"
	// The grain is told the host the friend's browser asked for, as a
	// local grain is, so links it makes and the Origin checks of its
	// websockets work on the friend's node.
	host := "grain"
	if fh := h.Get("X-Forwarded-Host"); fh != "" && len(fh) <= 255 && httpguts.ValidHostHeader(fh) {
		host = fh
	}
	req := &http.Request{
		Method: method, URL: u, Host: host, Header: h, ContentLength: n,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	if s.prepare != nil {
		s.prepare(req)
	}
	return req, nil
}

// exchange runs one request through the grain and sends the answer back:
// in res, if it is not nil and the answer is small and whole, else through
// the responder (streaming in a goroutine of its own when res is set, so
// the call can return).
func (s *GrainServer) exchange(req *http.Request, reqBody *bufPipe, responder Responder, res *Grain_request_Results) {
	ctx, cancel := context.WithCancel(s.ctx)
	// A request body cut off by revocation must not leave RoundTrip
	// waiting for bytes that will never come.
	stop := context.AfterFunc(ctx, func() { reqBody.CloseWithError(context.Cause(s.ctx)) })
	done := func() {
		stop()
		cancel()
		responder.Release()
	}
	resp, err := s.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		reqBody.CloseWithError(err)
		// Cut by the revocation, the exchange is refused as one begun
		// after it is, not answered as a grain that failed.
		code, msg := http.StatusBadGateway, "the grain is not available"
		if s.ctx.Err() != nil {
			code, msg = http.StatusForbidden, ErrRevoked.Error()
		}
		if res != nil && answer(*res, code, plainText, []byte(msg+"\n")) == nil {
			done()
			return
		}
		s.respondError(ctx, responder, code, msg)
		done()
		return
	}
	cleanHeaders(resp.Header)
	if resp.ContentLength >= 0 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Header.Set("Content-Length", fmt.Sprint(resp.ContentLength))
	}
	// A small body of known length goes with the head, in one message.
	var whole []byte
	if n := resp.ContentLength; n >= 0 && n <= chunkSize && resp.StatusCode != http.StatusSwitchingProtocols {
		whole = make([]byte, n)
		_, err := io.ReadFull(resp.Body, whole)
		resp.Body.Close()
		if err != nil {
			s.respondError(ctx, responder, http.StatusBadGateway, "the grain's response was cut short")
			done()
			return
		}
		if res != nil && answer(*res, resp.StatusCode, resp.Header, whole) == nil {
			done()
			return
		}
	}
	if res != nil {
		go s.respond(ctx, resp, whole, reqBody, responder, done)
		return
	}
	s.respond(ctx, resp, whole, reqBody, responder, done)
}

// answer puts a whole response in a request call's results.
func answer(res Grain_request_Results, status int, h http.Header, body []byte) error {
	a, err := res.NewAnswer()
	if err != nil {
		return err
	}
	a.SetStatus(uint16(status))
	if err := a.SetBody(body); err != nil {
		return err
	}
	return writeHeaders(h, a.NewHeaders)
}

// respond sends a response through the responder: whole, or streamed.
func (s *GrainServer) respond(ctx context.Context, resp *http.Response, whole []byte, reqBody *bufPipe, responder Responder, done func()) {
	defer done()
	defer resp.Body.Close()
	fut, release := responder.Start(ctx, func(p Responder_start_Params) error {
		p.SetStatus(uint16(resp.StatusCode))
		if whole != nil {
			p.SetEnd(true)
			if err := p.SetBody(whole); err != nil {
				return err
			}
		}
		return writeHeaders(resp.Header, p.NewHeaders)
	})
	defer release()
	if whole != nil {
		fut.Struct() // keeps the response to this exchange's end, like the streamed case
		return
	}
	out := fut.Body().AddRef()
	defer out.Release()
	// A responder that gave no stream (a friend's node may send
	// anything) leaves a null capability: writes to it fail, and it
	// takes no limiter.
	if capnp.Client(out).IsValid() {
		out.SetFlowLimiter(flowcontrol.NewFixedLimiter(flowWindow))
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			closeStream(ctx, out, errors.New("upgrade without a connection"))
			return
		}
		// Upstream: what the friend's node writes into the request body
		// stream goes into the upgraded connection.
		go func() {
			io.Copy(rwc, reqBody)
			rwc.Close()
		}()
		stop := context.AfterFunc(ctx, func() { rwc.Close() })
		defer stop()
	}
	err := copyToStream(ctx, out, resp.Body)
	if ctx.Err() != nil {
		err = context.Cause(s.ctx)
		if err == nil {
			err = ctx.Err()
		}
	}
	closeStream(ctx, out, err)
}

// plainText is the head of an exchange's error answer, whole or
// streamed; only read.
var plainText = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}

// refuseWait bounds the sending of an exchange's error answer.
const refuseWait = 10 * time.Second

// respondError answers an exchange with status and msg as plain text.
func (s *GrainServer) respondError(ctx context.Context, responder Responder, status int, msg string) {
	// The exchange's context ends with a revocation, which is when a
	// refusal matters most: it goes out on a context of its own, which a
	// stalled friend's node holds no longer than refuseWait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refuseWait)
	defer cancel()
	fut, release := responder.Start(ctx, func(p Responder_start_Params) error {
		p.SetStatus(uint16(status))
		return writeHeaders(plainText, p.NewHeaders)
	})
	defer release()
	out := fut.Body()
	out.Write(ctx, func(p ByteStream_write_Params) error { return p.SetData([]byte(msg + "\n")) })
	closeStream(ctx, out, nil)
}

// copyToStream sends r's bytes as writes on out until EOF.
func copyToStream(ctx context.Context, out ByteStream, r io.Reader) error {
	buf := make([]byte, chunkSize)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			data := buf[:n]
			if err := out.Write(ctx, func(p ByteStream_write_Params) error { return p.SetData(data) }); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			// Calls on one capability arrive in order, so the close that
			// follows needs no wait for these writes to be acknowledged.
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// closeStream ends out, saying why if err is not nil.
func closeStream(ctx context.Context, out ByteStream, err error) {
	fut, release := out.Close(ctx, func(p ByteStream_close_Params) error {
		if err != nil {
			return p.SetError(err.Error())
		}
		return nil
	})
	defer release()
	fut.Struct()
}

// pipeStream is a ByteStream whose bytes come out of a bufPipe. A write
// waits only while the pipe is full, which is what holds back a sender
// that is faster than the reader.
type pipeStream struct {
	w      *bufPipe
	mu     sync.Mutex
	closed bool
}

func (p *pipeStream) Write(ctx context.Context, call ByteStream_write) error {
	data, err := call.Args().Data()
	if err != nil {
		return err
	}
	if len(data) > chunkSize {
		err := fmt.Errorf("a write of %d bytes is over the limit of %d", len(data), chunkSize)
		p.w.CloseWithError(err)
		return err
	}
	if _, err := p.w.Write(data); err != nil {
		return fmt.Errorf("the reader is gone: %w", err)
	}
	return nil
}

func (p *pipeStream) Close(ctx context.Context, call ByteStream_close) error {
	msg, _ := call.Args().Error()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	if msg != "" {
		return p.w.CloseWithError(errors.New(msg))
	}
	return p.w.CloseWithError(nil)
}

// Shutdown runs when the last reference goes, as when the connection to
// the other node drops: a reader still waiting learns it.
func (p *pipeStream) Shutdown() {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if !closed {
		p.w.CloseWithError(errors.New("the other node went away"))
	}
}
