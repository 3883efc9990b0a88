package fed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/exc"

	"erg"
)

// refusingShares refuses every call with err.
type refusingShares struct{ err error }

func (s refusingShares) Restore(context.Context, string, string, []byte, string) (*GrainServer, ShareInfo, error) {
	return nil, ShareInfo{}, s.err
}
func (s refusingShares) Offer(context.Context, string, Offer) error     { return s.err }
func (s refusingShares) Withdraw(context.Context, string, []byte) error { return s.err }
func (s refusingShares) Unfriend(context.Context, string) error         { return s.err }

var allKinds = []erg.Kind{erg.Internal, erg.NotFound, erg.Invalid, erg.Forbidden, erg.Unauthenticated,
	erg.Conflict, erg.TooLarge, erg.TooMany, erg.Unavailable}

// TestFailureKindsCrossTheWire: each kind of refusal reaches the caller,
// over a real Cap'n Proto connection, with its kind and text.
func TestFailureKindsCrossTheWire(t *testing.T) {
	ctx := context.Background()
	token := make([]byte, 32)
	hash := make([]byte, 32)
	for _, k := range allKinds {
		t.Run(k.String(), func(t *testing.T) {
			refusal := erg.E(k, "refused by the test (%d)", k)
			gw := dialGateway(t, "peerB", refusingShares{refusal}, NewRateLimiter(1, 100))
			calls := map[string]func() error{
				"offer":    func() error { return SendOffer(ctx, gw, Offer{Token: token, Owner: "alice"}) },
				"withdraw": func() error { return SendWithdraw(ctx, gw, hash) },
				"unfriend": func() error { return SendUnfriend(ctx, gw) },
				"restore": func() error {
					_, _, err := Restore(ctx, gw, token, "bob")
					return err
				},
			}
			for name, call := range calls {
				err := call()
				if got := erg.KindOf(err); got != k {
					t.Errorf("%s: kind %v, want %v (%v)", name, got, k, err)
				}
				if !errors.Is(err, &erg.Error{Kind: k}) && k != erg.Internal {
					t.Errorf("%s: %v is not of its kind's sentinel", name, err)
				}
				switch {
				case name == "restore" && k == erg.NotFound:
					if !errors.Is(err, ErrUnknownToken) {
						t.Errorf("restore: %v is not ErrUnknownToken", err)
					}
				case name == "restore" && k == erg.TooMany:
					if !errors.Is(err, ErrTooManyRestores) {
						t.Errorf("restore: %v is not ErrTooManyRestores", err)
					}
				case name == "restore":
					// The owner's Gateway wraps what its table said.
					if err == nil || err.Error() != "restore: "+refusal.Error() {
						t.Errorf("restore: text %q", err)
					}
				default:
					if err == nil || err.Error() != refusal.Error() {
						t.Errorf("%s: text %q, want %q", name, err, refusal)
					}
				}
			}
		})
	}
}

// TestFedSentinelKinds: fed's own errors have their kinds.
func TestFedSentinelKinds(t *testing.T) {
	for err, k := range map[error]erg.Kind{ErrUnknownToken: erg.NotFound, ErrTooManyRestores: erg.TooMany, ErrRevoked: erg.Forbidden} {
		if erg.KindOf(err) != k || erg.KindOf(fmt.Errorf("wrapped: %w", err)) != k {
			t.Errorf("%v: kind %v, want %v", err, erg.KindOf(err), k)
		}
	}
}

// oldGateway is a Gateway as nodes before kinds served it: every refusal
// is an exception.
type oldGateway struct{ err error }

func (g oldGateway) Restore(context.Context, Gateway_restore) error   { return g.err }
func (g oldGateway) Offer(context.Context, Gateway_offer) error       { return g.err }
func (g oldGateway) Withdraw(context.Context, Gateway_withdraw) error { return g.err }
func (g oldGateway) Unfriend(context.Context, Gateway_unfriend) error { return g.err }

func dialOld(t *testing.T, srv Gateway_Server) Gateway {
	t.Helper()
	a, b := net.Pipe()
	server := NewConn(a, capnp.Client(Gateway_ServerToClient(srv)))
	client := NewConn(b, capnp.Client{})
	t.Cleanup(func() { client.Close(); server.Close() })
	gw := Gateway(client.Bootstrap(context.Background()))
	t.Cleanup(gw.Release)
	return gw
}

// TestOldNodesRefusalsReadAsInternal: a refusal from a node that sends
// no kind reads as Internal, with its text (without go-capnp's method
// prefix), and is no lost connection.
func TestOldNodesRefusalsReadAsInternal(t *testing.T) {
	ctx := context.Background()
	gw := dialOld(t, oldGateway{errors.New(`no user "nobody" on this node`)})
	err := SendOffer(ctx, gw, Offer{Token: []byte("t"), Owner: "alice"})
	if erg.KindOf(err) != erg.Internal || err.Error() != `no user "nobody" on this node` {
		t.Errorf("offer: kind %v, text %q", erg.KindOf(err), err)
	}
	if ConnectionLost(err) {
		t.Error("a refusal taken for a lost connection")
	}
	if exc.TypeOf(errors.Unwrap(err)) != exc.Failed {
		t.Errorf("the exception is lost: %#v", err)
	}
	_, _, err = Restore(ctx, gw, []byte("t"), "bob")
	if erg.KindOf(err) != erg.Internal || errors.Is(err, ErrUnknownToken) {
		t.Errorf("restore: kind %v, %v", erg.KindOf(err), err)
	}
}

// oldCall sends a Gateway call as a node before kinds did: its parameters
// sized as they were then (no data section, so no kinds). read, if set,
// sees the results.
func oldCall(ctx context.Context, gw Gateway, method uint16, name string, ptrs int, set func(capnp.Struct) error, read func(capnp.Struct)) error {
	ans, release := capnp.Client(gw).SendCall(ctx, capnp.Send{
		Method: capnp.Method{InterfaceID: Gateway_TypeID, MethodID: method,
			InterfaceName: "grain.capnp:Gateway", MethodName: name},
		ArgsSize:  capnp.ObjectSize{DataSize: 0, PointerCount: uint16(ptrs)},
		PlaceArgs: set,
	})
	defer release()
	res, err := ans.Struct()
	if err == nil && read != nil {
		read(res)
	}
	return err
}

// TestOldCallersGetExceptions: a call from an older node (no kinds) is
// refused with an exception holding the text older nodes look for, and
// answered as before when it succeeds.
func TestOldCallersGetExceptions(t *testing.T) {
	ctx := context.Background()
	for _, refusal := range []error{ErrUnknownToken, ErrTooManyRestores, erg.E(erg.Invalid, "no such user on this node")} {
		gw := dialGateway(t, "peerB", refusingShares{refusal}, NewRateLimiter(1, 100))
		err := oldCall(ctx, gw, 0, "restore", 2, func(s capnp.Struct) error {
			return Gateway_restore_Params(s).SetToken([]byte("t"))
		}, nil)
		var e *exc.Exception
		if !errors.As(err, &e) || e.Type != exc.Failed {
			t.Fatalf("restore: not an exception: %#v", err)
		}
		want := refusal.Error()
		if !errors.Is(refusal, ErrUnknownToken) {
			want = "restore: " + want
		}
		if r := errors.Unwrap(e.Cause); r == nil || r.Error() != want {
			t.Errorf("restore: reason %v, want %q", r, want)
		}
		err = oldCall(ctx, gw, 1, "offer", 4, func(s capnp.Struct) error {
			return Gateway_offer_Params(s).SetToken([]byte("t"))
		}, nil)
		if !errors.As(err, &e) || e.Type != exc.Failed || errors.Unwrap(e.Cause).Error() != refusal.Error() {
			t.Errorf("offer: %#v", err)
		}
	}

	shares := &memShares{holder: "peerB", token: []byte("t"), server: NewGrainServer(http.DefaultTransport, nil)}
	gw := dialGateway(t, "peerB", shares, NewRateLimiter(1, 100))
	err := oldCall(ctx, gw, 0, "restore", 2, func(s capnp.Struct) error {
		return Gateway_restore_Params(s).SetToken([]byte("t"))
	}, func(res capnp.Struct) {
		r := Gateway_restore_Results(res)
		if !r.HasGrain() || r.HasFailure() {
			t.Errorf("an old caller's restore: grain %v, failure %v", r.HasGrain(), r.HasFailure())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConnectionLost: a call on a dead connection is a lost connection.
func TestConnectionLost(t *testing.T) {
	ctx := context.Background()
	a, b := net.Pipe()
	shares := &memShares{holder: "peerB", token: []byte("t"), server: NewGrainServer(http.DefaultTransport, nil)}
	server := NewConn(a, capnp.Client(NewGateway("peerB", shares, NewRateLimiter(1, 100))))
	client := NewConn(b, capnp.Client{})
	gw := Gateway(client.Bootstrap(ctx))
	defer gw.Release()
	if _, _, err := Restore(ctx, gw, []byte("x"), "bob"); !errors.Is(err, ErrUnknownToken) || ConnectionLost(err) {
		t.Fatalf("before closing: %v", err)
	}
	server.Close()
	<-client.Done()
	_, _, err := Restore(ctx, gw, []byte("x"), "bob")
	if err == nil || !ConnectionLost(err) {
		t.Errorf("after closing: %v (%#v)", err, err)
	}
	if erg.KindOf(err) != erg.Internal {
		t.Errorf("kind %v", erg.KindOf(err))
	}
	client.Close()
}
