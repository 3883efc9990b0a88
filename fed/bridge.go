package fed

import (
	"context"
	"net/http"

	"erg"
)

// BridgeBackend is what a grain's Bridge answers with: the node's
// powerbox, bound to the one grain whose sandbox the bridge's socket is in.
type BridgeBackend interface {
	// Claim trades a claim for a grant, returning its secret and its id.
	Claim(ctx context.Context, claim, label string) (grant, id string, err error)
	// Open checks a grant and leases its target grain: rt reaches it,
	// prepare sets who is asking on each request, stopped is cancelled
	// when the grant stops holding, and done ends the lease.
	Open(ctx context.Context, grant string) (rt http.RoundTripper, prepare func(*http.Request), stopped context.Context, done func(), err error)
}

// NewBridge returns a Bridge capability served by b.
func NewBridge(b BridgeBackend) Bridge { return Bridge_ServerToClient(&bridgeServer{b: b}) }

type bridgeServer struct{ b BridgeBackend }

// maxBridgeText bounds a claim, grant or label sent to the bridge.
const maxBridgeText = 512

var errBadBridgeRequest error = &erg.Error{Kind: erg.Invalid, Msg: "a claim, grant or label that is not text of at most 512 bytes"}

// Claim implements Bridge_Server.
func (s *bridgeServer) Claim(ctx context.Context, call Bridge_claim) error {
	args := call.Args()
	claim, err1 := args.Claim()
	label, err2 := args.Label()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	var grant, id string
	switch {
	case err1 != nil || err2 != nil || len(claim) > maxBridgeText || len(label) > maxBridgeText:
		err = errBadBridgeRequest
	default:
		grant, id, err = s.b.Claim(ctx, claim, label)
	}
	if err != nil {
		if writeFailure(args.Kinds(), err, res.NewFailure) {
			return nil
		}
		return err
	}
	if err := res.SetGrant(grant); err != nil {
		return err
	}
	return res.SetId(id)
}

// Open implements Bridge_Server.
func (s *bridgeServer) Open(ctx context.Context, call Bridge_open) error {
	args := call.Args()
	grant, err := args.Grant()
	res, aerr := call.AllocResults()
	if aerr != nil {
		return aerr
	}
	var (
		rt      http.RoundTripper
		prepare func(*http.Request)
		stopped context.Context
		done    func()
	)
	if err != nil || len(grant) > maxBridgeText {
		err = errBadBridgeRequest
	} else {
		rt, prepare, stopped, done, err = s.b.Open(ctx, grant)
	}
	if err != nil {
		if writeFailure(args.Kinds(), err, res.NewFailure) {
			return nil
		}
		return err
	}
	gs := NewGrainServer(rt, prepare)
	gs.OnRelease = done
	context.AfterFunc(stopped, gs.Revoke)
	return res.SetGrain(gs.Client())
}
