package fed

import (
	"errors"
	"io"
	"net"

	"capnproto.org/go/capnp/v3/exc"
	"capnproto.org/go/capnp/v3/rpc"

	"erg"
)

// maxFailureMessage bounds the text of a failure read from another node.
const maxFailureMessage = 1 << 10

// writeFailure answers a refused call with err's kind and text in the
// results' failure, if the caller asked for kinds (a newer node), and
// reports whether it did; if not, the call must fail with err as an
// exception, which is all an older node understands.
func writeFailure(kinds bool, err error, newFailure func() (Failure, error)) bool {
	if !kinds {
		return false
	}
	f, ferr := newFailure()
	if ferr != nil {
		return false
	}
	kind, _ := erg.KindOf(err).MarshalText()
	if f.SetKind(string(kind)) != nil || f.SetReason(err.Error()) != nil {
		return false
	}
	return true
}

// readFailure rebuilds the error a failure carries: an *erg.Error of its
// kind (Internal if the kind is one this node does not know).
func readFailure(f Failure) error {
	kind, _ := f.Kind()
	msg, _ := f.Reason()
	if len(msg) > maxFailureMessage {
		msg = msg[:maxFailureMessage]
	}
	return &erg.Error{Kind: erg.ParseKind(kind), Msg: msg}
}

// remoteException is an exception a call failed with: a refusal from an
// older node, which sends no kind, or a failure of the RPC layer or the
// connection. It reads as the reason alone, without the method go-capnp
// prefixes, and unwraps to the exception, so ConnectionLost still sees
// the exception's type and cause.
type remoteException struct {
	err    error
	reason string
}

func (e *remoteException) Error() string { return e.reason }
func (e *remoteException) Unwrap() error { return e.err }

// callError is the error of a call that failed with an exception. Its
// kind is Internal.
func callError(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*exc.Exception); ok && e.Prefix == "" {
		// go-capnp annotates the exception of a call with its method:
		// Cause is then the method's annotation around the reason.
		if inner := errors.Unwrap(e.Cause); inner != nil {
			return &remoteException{err: err, reason: inner.Error()}
		}
	}
	return err
}

// ConnectionLost tells a call that failed because the connection to the
// other node died (and another connection may succeed) from one the other
// node refused. It decides on the exception's type and the errors the RPC
// layer and the stream return, never on text. The stream's own typed
// errors (libp2p's network.ErrReset) are for the caller, who knows the
// stream, to add.
func ConnectionLost(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch x := e.(type) {
		case *exc.Exception:
			if x.Type == exc.Disconnected {
				return true
			}
		case exc.Exception:
			if x.Type == exc.Disconnected {
				return true
			}
		}
	}
	return errors.Is(err, rpc.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed)
}
