package fed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/flowcontrol"

	"erg"
)

// Transport is an http.RoundTripper that sends each exchange through a
// Grain capability. It handles upgrades (websockets): the response to one
// has a Body that is also an io.Writer, as httputil.ReverseProxy expects.
type Transport struct {
	Grain Grain
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	h := req.Header.Clone()
	upgrade := cleanHeaders(h)
	StripClientHeaders(h)
	// The grain checks a websocket's Origin against the host the browser
	// asked for, which is this node's name for the grain.
	if req.Host != "" {
		h.Set("X-Forwarded-Host", req.Host)
	}
	length := req.ContentLength
	if req.Body == nil || req.Body == http.NoBody {
		length = 0
	} else if length == 0 {
		length = -1
	}
	rs := &responder{started: make(chan startResult, 1)}
	respCap := Responder_ServerToClient(rs)
	fut, release := t.Grain.Request(ctx, func(p Grain_request_Params) error {
		head, err := p.NewHead()
		if err != nil {
			return err
		}
		if err := head.SetMethod(req.Method); err != nil {
			return err
		}
		if err := head.SetPath(req.URL.RequestURI()); err != nil {
			return err
		}
		head.SetContentLength(length)
		if err := writeHeaders(h, head.NewHeaders); err != nil {
			return err
		}
		p.SetKinds(true)
		return p.SetResponse(respCap)
	})
	body := fut.Body().AddRef()
	// A request without a body gets no stream: a call answered before
	// here (as one in process may be) leaves a null capability, which
	// takes no limiter.
	if capnp.Client(body).IsValid() {
		body.SetFlowLimiter(flowcontrol.NewFixedLimiter(flowWindow))
	}
	fail := func(err error) (*http.Response, error) {
		body.Release()
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// The call returns as soon as the owner's node has accepted the
	// exchange, or fails when it refuses (revoked, malformed); the answer
	// itself comes through the responder.
	var answered *startResult
	select {
	case <-fut.Done():
	case <-ctx.Done():
		// The call's answer is released once it comes, by nobody else.
		go func() { <-fut.Done(); release() }()
		return fail(ctx.Err())
	}
	// Read on this goroutine: a goroutine of its own to wait for the
	// answer would be one more handoff on every request.
	res, err := fut.Struct()
	if err != nil {
		err = callError(err)
	} else if res.HasFailure() {
		err = resultFailure(true, res.Failure)
	} else if res.HasAnswer() {
		answered, err = readAnswer(res)
	}
	release()
	if err != nil {
		return fail(remoteError(err))
	}
	// A request without a body sends nothing on the body stream: the
	// owner's side never reads it, and every message saved is latency
	// saved.
	if upgrade == "" && length != 0 {
		up := body.AddRef()
		go func() {
			defer up.Release()
			err := copyToStream(ctx, up, req.Body)
			req.Body.Close()
			closeStream(ctx, up, err)
		}()
	}
	var started startResult
	if answered != nil {
		started = *answered
	} else {
		select {
		case started = <-rs.started:
			if started.err != nil {
				return fail(started.err)
			}
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	resp := &http.Response{
		StatusCode: started.status, Status: fmt.Sprintf("%d %s", started.status, http.StatusText(started.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: started.header, Request: req, ContentLength: -1,
	}
	if cl := started.header.Get("Content-Length"); cl != "" {
		fmt.Sscan(cl, &resp.ContentLength)
	}
	if started.status == http.StatusSwitchingProtocols {
		resp.ContentLength = 0 // as net/http has it: a 101 has no body, only a connection
		resp.Body = &upgradedConn{r: started.body, w: body, ctx: context.WithoutCancel(ctx)}
		return resp, nil
	}
	body.Release()
	if started.end {
		resp.Body = io.NopCloser(bytes.NewReader(started.whole))
		resp.ContentLength = int64(len(started.whole))
		return resp, nil
	}
	resp.Body = started.body
	return resp, nil
}

// remoteError turns a failed call into an error a proxy can act on: a
// refusal of kind Forbidden is the share's revocation.
func remoteError(err error) error {
	if erg.KindOf(err) == erg.Forbidden {
		return ErrRevoked
	}
	return fmt.Errorf("friend's node: %w", err)
}

type startResult struct {
	status int
	header http.Header
	body   *bufPipe
	whole  []byte // the whole body, when end is set
	end    bool
	err    error
}

// responder receives the answer to one exchange.
type responder struct {
	once    sync.Once
	started chan startResult
}

// readHead checks a response's status and headers from the wire.
func readHead(status int, list Header_List) (http.Header, error) {
	if status < 100 || status > 999 {
		return nil, fmt.Errorf("invalid status %d", status)
	}
	h, err := readHeaders(list)
	if err != nil {
		return nil, err
	}
	if status == http.StatusSwitchingProtocols {
		h.Set("Connection", "Upgrade")
	} else {
		cl := h.Get("Content-Length")
		cleanHeaders(h)
		if cl != "" {
			h.Set("Content-Length", cl)
		}
	}
	return h, nil
}

// readAnswer reads a whole response from a request's results.
func readAnswer(res Grain_request_Results) (*startResult, error) {
	a, err := res.Answer()
	if err != nil {
		return nil, err
	}
	list, err := a.Headers()
	if err != nil {
		return nil, err
	}
	status := int(a.Status())
	if status == http.StatusSwitchingProtocols {
		return nil, errors.New("an upgrade cannot be answered whole")
	}
	h, err := readHead(status, list)
	if err != nil {
		return nil, err
	}
	body, err := a.Body()
	if err != nil {
		return nil, err
	}
	if len(body) > chunkSize {
		return nil, errors.New("a whole answer is at most 256 KiB")
	}
	return &startResult{status: status, header: h, whole: bytes.Clone(body), end: true}, nil
}

func (r *responder) Start(ctx context.Context, call Responder_start) error {
	status := int(call.Args().Status())
	list, err := call.Args().Headers()
	if err != nil {
		return err
	}
	h, err := readHead(status, list)
	if err != nil {
		return err
	}
	whole, err := call.Args().Body()
	if err != nil {
		return err
	}
	end := call.Args().End()
	if len(whole) > chunkSize || (!end && len(whole) > 0) {
		return errors.New("a body in start must be whole and at most 256 KiB")
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	first := false
	r.once.Do(func() {
		first = true
		pr := newBufPipe(flowWindow)
		if end {
			r.started <- startResult{status: status, header: h, whole: bytes.Clone(whole), end: true}
			return
		}
		if err = res.SetBody(ByteStream_ServerToClient(&pipeStream{w: pr})); err == nil {
			r.started <- startResult{status: status, header: h, body: pr}
		}
	})
	if !first {
		return errors.New("the response was already started")
	}
	return err
}

// Shutdown runs when the owner's node drops the responder without
// answering, as when the connection between the nodes breaks.
func (r *responder) Shutdown() {
	r.once.Do(func() {
		r.started <- startResult{err: errors.New("the friend's node went away before it answered")}
	})
}

// upgradedConn is the friend's side of an upgraded connection: reads come
// from the owner's node, writes go to it.
type upgradedConn struct {
	r   *bufPipe
	w   ByteStream
	ctx context.Context

	mu     sync.Mutex
	closed bool
}

func (c *upgradedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *upgradedConn) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += chunkSize {
		data := p[off:min(off+chunkSize, len(p))]
		if err := c.w.Write(c.ctx, func(wp ByteStream_write_Params) error { return wp.SetData(data) }); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (c *upgradedConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.r.Close()
	closeStream(c.ctx, c.w, nil)
	c.w.Release()
	return nil
}
