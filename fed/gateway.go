package fed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"capnproto.org/go/capnp/v3"

	"erg"
)

// MaxTokenSize bounds a sturdy ref token; ours are 32 random bytes.
const MaxTokenSize = 64

// ErrUnknownToken is what restore says for a token that is not a live share
// held by the asking node: unknown, revoked and someone else's look the
// same, so a guesser learns nothing. Its kind is NotFound, and a restore
// that fails with that kind fails with ErrUnknownToken. (Older nodes find
// its text in an exception's: the text stays.)
var ErrUnknownToken error = &erg.Error{Kind: erg.NotFound, Msg: "no such share for this node (it may have been revoked)"}

// ErrTooManyRestores is what the Gateway says to a node that calls too
// often. Its kind is TooMany.
var ErrTooManyRestores error = &erg.Error{Kind: erg.TooMany, Msg: "too many restore attempts; try again later"}

// ShareInfo describes a restored grain to the friend's node.
type ShareInfo struct {
	Title, AppName, Role string
	Permissions          []string
	// Offers are the APIs the grain's app offers; Roles the app's roles
	// the friend's node may hand on, none above Role.
	Offers []string
	Roles  []erg.Role
	// APIPath is where the grain's app serves its API; the receiver
	// checks it is one (apppkg.IsAPIPath).
	APIPath string
}

// Offer is a share another node made for this one, as it arrives.
type Offer struct {
	Token []byte
	Info  ShareInfo
	// Owner is the grain owner's username on the offering node.
	Owner string
	// User is the user of this node the share is for; empty means the
	// node's owner.
	User string
}

// Shares is what a node knows about grains shared between friends: those
// it shares (Restore) and those shared with it (Offer, Withdraw).
type Shares interface {
	// Restore returns a live grain for token if peer (a libp2p peer id,
	// authenticated by the connection) holds that share, for user on
	// peer's node, with role ("": the share's; another no higher than
	// it); otherwise an error wrapping ErrUnknownToken.
	Restore(ctx context.Context, peer, user string, token []byte, role string) (*GrainServer, ShareInfo, error)
	// Offer records a share peer made for this node.
	Offer(ctx context.Context, peer string, o Offer) error
	// Withdraw marks a share peer offered as revoked; hash is the SHA-256
	// of its token.
	Withdraw(ctx context.Context, peer string, hash []byte) error
	// Unfriend forgets peer, which ended the friendship.
	Unfriend(ctx context.Context, peer string) error
}

// gatewayServer serves the Gateway interface to one connected peer.
type gatewayServer struct {
	peer    string
	shares  Shares
	limiter *RateLimiter
}

// NewGateway returns the bootstrap capability for a connection from peer.
func NewGateway(peer string, shares Shares, limiter *RateLimiter) Gateway {
	return Gateway_ServerToClient(&gatewayServer{peer: peer, shares: shares, limiter: limiter})
}

// Restore implements Gateway_Server.
func (g *gatewayServer) Restore(ctx context.Context, call Gateway_restore) error {
	gs, info, err := g.restore(ctx, call.Args())
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
	if err := res.SetGrain(gs.Client()); err != nil {
		return err
	}
	gi, err := res.NewInfo()
	if err != nil {
		return err
	}
	return writeInfo(gi, info)
}

func (g *gatewayServer) restore(ctx context.Context, args Gateway_restore_Params) (*GrainServer, ShareInfo, error) {
	if !g.limiter.Allow(g.peer) {
		return nil, ShareInfo{}, ErrTooManyRestores
	}
	token, err := args.Token()
	if err != nil {
		return nil, ShareInfo{}, erg.E(erg.Invalid, "token: %v", err)
	}
	user, err := args.User()
	if err != nil {
		return nil, ShareInfo{}, erg.E(erg.Invalid, "user: %v", err)
	}
	if len(token) == 0 || len(token) > MaxTokenSize {
		return nil, ShareInfo{}, ErrUnknownToken
	}
	if len(user) > 64 {
		return nil, ShareInfo{}, erg.E(erg.Invalid, "the user name is longer than 64 bytes")
	}
	role, err := args.Role()
	if err != nil || len(role) > 64 {
		return nil, ShareInfo{}, erg.E(erg.Invalid, "the role name is not text of at most 64 bytes")
	}
	gs, info, err := g.shares.Restore(ctx, g.peer, user, token, role)
	if err != nil {
		if errors.Is(err, ErrUnknownToken) {
			return nil, ShareInfo{}, ErrUnknownToken
		}
		return nil, ShareInfo{}, fmt.Errorf("restore: %w", err)
	}
	return gs, info, nil
}

// Offer implements Gateway_Server.
func (g *gatewayServer) Offer(ctx context.Context, call Gateway_offer) error {
	return g.answer(call.Args().Kinds(), g.offer(ctx, call.Args()), func() (Failure, error) {
		res, err := call.AllocResults()
		if err != nil {
			return Failure{}, err
		}
		return res.NewFailure()
	})
}

// answer ends a call that returns nothing but may be refused.
func (g *gatewayServer) answer(kinds bool, err error, newFailure func() (Failure, error)) error {
	if err != nil && writeFailure(kinds, err, newFailure) {
		return nil
	}
	return err
}

func (g *gatewayServer) offer(ctx context.Context, args Gateway_offer_Params) error {
	if !g.limiter.Allow(g.peer) {
		return ErrTooManyRestores
	}
	var o Offer
	var err error
	if o.Token, err = args.Token(); err != nil {
		return erg.E(erg.Invalid, "token: %v", err)
	}
	if len(o.Token) == 0 || len(o.Token) > MaxTokenSize {
		return erg.E(erg.Invalid, "the token must be 1 to 64 bytes")
	}
	o.Token = bytes.Clone(o.Token)
	if o.Owner, err = args.Owner(); err != nil {
		return erg.E(erg.Invalid, "owner: %v", err)
	}
	if o.User, err = args.User(); err != nil {
		return erg.E(erg.Invalid, "user: %v", err)
	}
	gi, err := args.Info()
	if err != nil {
		return erg.E(erg.Invalid, "info: %v", err)
	}
	if o.Info, err = readInfo(gi); err != nil {
		return erg.E(erg.Invalid, "%v", err)
	}
	for _, s := range []string{o.Owner, o.User, o.Info.Role, o.Info.AppName} {
		if len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return erg.E(erg.Invalid, "a name in the offer is too long or holds control characters")
		}
	}
	if len(o.Info.Title) > 200 || strings.ContainsFunc(o.Info.Title, func(r rune) bool { return r < ' ' }) {
		return erg.E(erg.Invalid, "the offered grain's title is too long or holds control characters")
	}
	return g.shares.Offer(ctx, g.peer, o)
}

// Withdraw implements Gateway_Server.
func (g *gatewayServer) Withdraw(ctx context.Context, call Gateway_withdraw) error {
	return g.answer(call.Args().Kinds(), g.withdraw(ctx, call.Args()), func() (Failure, error) {
		res, err := call.AllocResults()
		if err != nil {
			return Failure{}, err
		}
		return res.NewFailure()
	})
}

func (g *gatewayServer) withdraw(ctx context.Context, args Gateway_withdraw_Params) error {
	if !g.limiter.Allow(g.peer) {
		return ErrTooManyRestores
	}
	hash, err := args.TokenHash()
	if err != nil {
		return erg.E(erg.Invalid, "token hash: %v", err)
	}
	if len(hash) != 32 {
		return erg.E(erg.Invalid, "a token hash is 32 bytes")
	}
	return g.shares.Withdraw(ctx, g.peer, bytes.Clone(hash))
}

// Unfriend implements Gateway_Server.
func (g *gatewayServer) Unfriend(ctx context.Context, call Gateway_unfriend) error {
	return g.answer(call.Args().Kinds(), g.shares.Unfriend(ctx, g.peer), func() (Failure, error) {
		res, err := call.AllocResults()
		if err != nil {
			return Failure{}, err
		}
		return res.NewFailure()
	})
}

// Bounds on what a GrainInfo lists.
const (
	maxInfoNames = 64 // permissions, offers and roles, each
	maxInfoName  = 64 // bytes of one name
)

// readInfo decodes GrainInfo, bounding its lists.
func readInfo(gi GrainInfo) (ShareInfo, error) {
	var info ShareInfo
	info.Title, _ = gi.Title()
	info.AppName, _ = gi.AppName()
	info.Role, _ = gi.Role()
	info.APIPath, _ = gi.ApiPath()
	if len(info.APIPath) > 256 {
		return info, errors.New("the apiPath is over 256 bytes")
	}
	var err error
	if info.Permissions, err = readNames(gi.Permissions, "permission"); err != nil {
		return info, err
	}
	if info.Offers, err = readNames(gi.Offers, "offer"); err != nil {
		return info, err
	}
	roles, err := gi.Roles()
	if err != nil {
		return info, err
	}
	if roles.Len() > maxInfoNames {
		return info, fmt.Errorf("more than %d roles", maxInfoNames)
	}
	for i := 0; i < roles.Len(); i++ {
		r := roles.At(i)
		var role erg.Role
		role.Name, _ = r.Name()
		role.Title, _ = r.Title()
		if len(role.Name) > maxInfoName || len(role.Title) > 200 {
			return info, errors.New("a role's name is over 64 bytes or its title over 200")
		}
		if role.Permissions, err = readNames(r.Permissions, "permission"); err != nil {
			return info, err
		}
		info.Roles = append(info.Roles, role)
	}
	return info, nil
}

// readNames reads a list of names, bounded in count and length.
func readNames(list func() (capnp.TextList, error), what string) ([]string, error) {
	ps, err := list()
	if err != nil {
		return nil, err
	}
	if ps.Len() > maxInfoNames {
		return nil, fmt.Errorf("more than %d %ss", maxInfoNames, what)
	}
	var out []string
	for i := 0; i < ps.Len(); i++ {
		p, _ := ps.At(i)
		if len(p) > maxInfoName {
			return nil, fmt.Errorf("a name among the %ss is over %d bytes", what, maxInfoName)
		}
		out = append(out, p)
	}
	return out, nil
}

func writeInfo(gi GrainInfo, info ShareInfo) error {
	gi.SetTitle(info.Title)
	gi.SetAppName(info.AppName)
	gi.SetRole(info.Role)
	if info.APIPath != "" {
		if err := gi.SetApiPath(info.APIPath); err != nil {
			return err
		}
	}
	if err := writeNames(gi.NewPermissions, info.Permissions); err != nil {
		return err
	}
	if err := writeNames(gi.NewOffers, info.Offers); err != nil {
		return err
	}
	roles, err := gi.NewRoles(int32(len(info.Roles)))
	if err != nil {
		return err
	}
	for i, r := range info.Roles {
		ri := roles.At(i)
		ri.SetName(r.Name)
		ri.SetTitle(r.Title)
		if err := writeNames(ri.NewPermissions, r.Permissions); err != nil {
			return err
		}
	}
	return nil
}

func writeNames(newList func(int32) (capnp.TextList, error), names []string) error {
	list, err := newList(int32(len(names)))
	if err != nil {
		return err
	}
	for i, n := range names {
		if err := list.Set(i, n); err != nil {
			return err
		}
	}
	return nil
}

// SendOffer delivers a share to a friend's node through its Gateway.
func SendOffer(ctx context.Context, gw Gateway, o Offer) error {
	fut, release := gw.Offer(ctx, func(p Gateway_offer_Params) error {
		if err := p.SetToken(o.Token); err != nil {
			return err
		}
		if err := p.SetOwner(o.Owner); err != nil {
			return err
		}
		if err := p.SetUser(o.User); err != nil {
			return err
		}
		gi, err := p.NewInfo()
		if err != nil {
			return err
		}
		p.SetKinds(true)
		return writeInfo(gi, o.Info)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return callError(err)
	}
	return resultFailure(res.HasFailure(), res.Failure)
}

// resultFailure is the error a result's failure carries, or nil.
func resultFailure(has bool, failure func() (Failure, error)) error {
	if !has {
		return nil
	}
	f, err := failure()
	if err != nil {
		return fmt.Errorf("friend's node: read failure: %w", err)
	}
	return readFailure(f)
}

// SendWithdraw tells a friend's node a share it holds was revoked; hash is
// the SHA-256 of the share's token.
func SendWithdraw(ctx context.Context, gw Gateway, hash []byte) error {
	fut, release := gw.Withdraw(ctx, func(p Gateway_withdraw_Params) error {
		p.SetKinds(true)
		return p.SetTokenHash(hash)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return callError(err)
	}
	return resultFailure(res.HasFailure(), res.Failure)
}

// Restore asks a friend's node (through its Gateway) for the grain behind
// token, for user, with the share's role. The caller releases the
// returned Grain. A refusal of kind NotFound is ErrUnknownToken, one of
// kind TooMany is ErrTooManyRestores; an older node's refusal has kind
// Internal.
func Restore(ctx context.Context, gw Gateway, token []byte, user string) (Grain, ShareInfo, error) {
	return RestoreAs(ctx, gw, token, user, "")
}

// RestoreAs is Restore with a role no higher than the share's (one of
// its ShareInfo's Roles); "" is the share's own. A node that answers
// with another role (an older one, which ignores the role) is refused
// here, its grain released: a user must never get more than was asked.
func RestoreAs(ctx context.Context, gw Gateway, token []byte, user, role string) (Grain, ShareInfo, error) {
	fut, release := gw.Restore(ctx, func(p Gateway_restore_Params) error {
		if err := p.SetToken(token); err != nil {
			return err
		}
		if role != "" {
			if err := p.SetRole(role); err != nil {
				return err
			}
		}
		p.SetKinds(true)
		return p.SetUser(user)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return Grain{}, ShareInfo{}, callError(err)
	}
	if err := resultFailure(res.HasFailure(), res.Failure); err != nil {
		switch erg.KindOf(err) {
		case erg.NotFound:
			return Grain{}, ShareInfo{}, ErrUnknownToken
		case erg.TooMany:
			return Grain{}, ShareInfo{}, ErrTooManyRestores
		}
		return Grain{}, ShareInfo{}, err
	}
	var info ShareInfo
	if gi, err := res.Info(); err == nil {
		info, _ = readInfo(gi)
	}
	if role != "" && info.Role != role {
		return Grain{}, ShareInfo{}, erg.E(erg.Forbidden, "the friend's node gave the role %q, not %q as asked (it may be an older erg)", info.Role, role)
	}
	return res.Grain().AddRef(), info, nil
}

// RateLimiter is a token bucket per peer: each peer may make Burst calls
// at once and Rate a second after that.
type RateLimiter struct {
	Rate  float64
	Burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter allowing burst calls at once and rate a
// second after that, per peer.
func NewRateLimiter(rate, burst float64) *RateLimiter {
	return &RateLimiter{Rate: rate, Burst: burst, buckets: map[string]*bucket{}}
}

// Allow spends one token of peer's bucket, if there is one.
func (l *RateLimiter) Allow(peer string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b := l.buckets[peer]
	if b == nil {
		if len(l.buckets) > 10000 {
			// Forget full buckets so a crowd of peers cannot grow the map
			// without bound.
			for k, v := range l.buckets {
				if v.tokens+now.Sub(v.last).Seconds()*l.Rate >= l.Burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.Burst, last: now}
		l.buckets[peer] = b
	}
	b.tokens = min(l.Burst, b.tokens+now.Sub(b.last).Seconds()*l.Rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// SendUnfriend tells a friend's node this node ends the friendship.
func SendUnfriend(ctx context.Context, gw Gateway) error {
	fut, release := gw.Unfriend(ctx, func(p Gateway_unfriend_Params) error {
		p.SetKinds(true)
		return nil
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return callError(err)
	}
	return resultFailure(res.HasFailure(), res.Failure)
}
