package fed

import (
	"context"
	"net/http"

	"erg"
)

// BridgeBackend is what a grain's Bridge answers with: the node's
// powerbox, bound to the one grain whose sandbox the bridge's socket is in.
type BridgeBackend interface {
	// Claim trades a claim for a grant: its secret (Token), ID, Target
	// and Role are what the caller is told.
	Claim(ctx context.Context, claim, label string) (erg.Grant, error)
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
	// A bridge's calls need no order among them; one that waits on the
	// database or a grain's start must not hold back the others.
	call.Go()
	args := call.Args()
	claim, err1 := args.Claim()
	label, err2 := args.Label()
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	var g erg.Grant
	switch {
	case err1 != nil || err2 != nil || len(claim) > maxBridgeText || len(label) > maxBridgeText:
		err = errBadBridgeRequest
	default:
		g, err = s.b.Claim(ctx, claim, label)
	}
	if err != nil {
		if writeFailure(args.Kinds(), err, res.NewFailure) {
			return nil
		}
		return err
	}
	if err := res.SetGrant(g.Token); err != nil {
		return err
	}
	if err := res.SetId(g.ID); err != nil {
		return err
	}
	if err := res.SetTarget(g.Target); err != nil {
		return err
	}
	return res.SetRole(g.Role)
}

// Open implements Bridge_Server.
func (s *bridgeServer) Open(ctx context.Context, call Bridge_open) error {
	call.Go()
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

// ClaimGrant trades a claim for a grant through a Bridge, as a grain's
// app does: the grant's Token, ID, Target and Role are set. A refusal
// keeps its kind.
func ClaimGrant(ctx context.Context, b Bridge, claim, label string) (erg.Grant, error) {
	fut, release := b.Claim(ctx, func(p Bridge_claim_Params) error {
		p.SetKinds(true)
		if err := p.SetClaim(claim); err != nil {
			return err
		}
		return p.SetLabel(label)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return erg.Grant{}, callError(err)
	}
	if err := resultFailure(res.HasFailure(), res.Failure); err != nil {
		return erg.Grant{}, err
	}
	var g erg.Grant
	g.Token, _ = res.Grant()
	g.ID, _ = res.Id()
	g.Target, _ = res.Target()
	g.Role, _ = res.Role()
	return g, nil
}

// OpenGrant turns a grant into a capability to its target grain through
// a Bridge; the caller releases it. A refusal keeps its kind.
func OpenGrant(ctx context.Context, b Bridge, grant string) (Grain, error) {
	fut, release := b.Open(ctx, func(p Bridge_open_Params) error {
		p.SetKinds(true)
		return p.SetGrant(grant)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return Grain{}, callError(err)
	}
	if err := resultFailure(res.HasFailure(), res.Failure); err != nil {
		return Grain{}, err
	}
	return res.Grain().AddRef(), nil
}
