package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ErrTooLarge is wrapped by every error about a frame over its limit.
var ErrTooLarge = errors.New("over the size limit")

// WriteFrame writes one length-prefixed frame: a uvarint length, then b.
func WriteFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ReadFrame reads one frame written by WriteFrame, refusing one longer than
// max before allocating for it. A zero-length frame returns an empty,
// non-nil slice.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes: %w of %d", n, ErrTooLarge, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("truncated frame: %w", err)
	}
	return b, nil
}

// Stream is a stream whose every read and write must make progress within
// a timeout, so a peer that stalls is dropped instead of holding us.
type Stream struct {
	network.Stream
	R       *bufio.Reader
	timeout time.Duration
}

// NewStream opens a stream to p for proto with the given stall timeout.
func (x *Host) NewStream(ctx context.Context, p peer.ID, proto protocol.ID, timeout time.Duration) (*Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := x.h.NewStream(network.WithAllowLimitedConn(ctx, string(proto)), p, proto)
	if err != nil {
		return nil, err
	}
	return WrapStream(s, timeout), nil
}

// WrapStream gives s a stall timeout and a buffered reader.
func WrapStream(s network.Stream, timeout time.Duration) *Stream {
	return &Stream{Stream: s, R: bufio.NewReaderSize(&deadlineReader{s, timeout}, 64<<10), timeout: timeout}
}

func (s *Stream) Write(b []byte) (int, error) {
	s.Stream.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.Stream.Write(b)
}

// ReadFrame reads one frame of at most max bytes.
func (s *Stream) ReadFrame(max int) ([]byte, error) {
	b, err := ReadFrame(s.R, max)
	if isTimeout(err) {
		return nil, fmt.Errorf("stalled: sent nothing for %s", s.timeout)
	}
	return b, err
}

type deadlineReader struct {
	s       network.Stream
	timeout time.Duration
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	d.s.SetReadDeadline(time.Now().Add(d.timeout))
	return d.s.Read(b)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Timeout())
}
