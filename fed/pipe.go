package fed

import (
	"bytes"
	"io"
	"sync"
)

// bufPipe is a pipe with a buffer of up to max bytes. A ByteStream's
// writes land in it and return at once, so the sender's next chunk is on
// the wire while the reader is still busy with this one; the sender's flow
// limiter keeps the buffer from growing past its window.
type bufPipe struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  bytes.Buffer
	max  int
	werr error // set when the writer is done: io.EOF or why it failed
	rerr error // set when the reader is gone
}

func newBufPipe(max int) *bufPipe {
	p := &bufPipe{max: max}
	p.cond.L = &p.mu
	return p
}

// Write adds p, waiting while the buffer is full.
func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() > 0 && p.buf.Len()+len(b) > p.max && p.rerr == nil && p.werr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.werr != nil {
		return 0, io.ErrClosedPipe
	}
	p.buf.Write(b)
	p.cond.Broadcast()
	return len(b), nil
}

// CloseWithError ends the writing side; readers get err (io.EOF if nil)
// once the buffer is drained.
func (p *bufPipe) CloseWithError(err error) error {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
	return nil
}

// Read takes what is buffered, waiting for the writer if nothing is.
func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.buf.Len() > 0 {
		n, _ := p.buf.Read(b)
		p.cond.Broadcast()
		return n, nil
	}
	return 0, p.werr
}

// Close is the reader going away: the writer's next write fails.
func (p *bufPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr == nil {
		p.rerr = io.ErrClosedPipe
	}
	p.buf.Reset()
	p.cond.Broadcast()
	return nil
}
