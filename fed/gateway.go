package fed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// MaxTokenSize bounds a sturdy ref token; ours are 32 random bytes.
const MaxTokenSize = 64

// ErrUnknownToken is what restore says for a token that is not a live share
// held by the asking node: unknown, revoked and someone else's look the
// same, so a guesser learns nothing.
var ErrUnknownToken = errors.New("no such share for this node (it may have been revoked)")

// ErrTooManyRestores is what restore says to a node that asks too often.
var ErrTooManyRestores = errors.New("too many restore attempts; try again later")

// ShareInfo describes a restored grain to the friend's node.
type ShareInfo struct {
	Title, AppName, Role string
	Permissions          []string
}

// Shares is what the owner's node knows about grains shared with friends.
type Shares interface {
	// Restore returns a live grain for token if peer (a libp2p peer id,
	// authenticated by the connection) holds that share, for user on
	// peer's node; otherwise an error wrapping ErrUnknownToken.
	Restore(ctx context.Context, peer, user string, token []byte) (*GrainServer, ShareInfo, error)
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
	if !g.limiter.Allow(g.peer) {
		return ErrTooManyRestores
	}
	token, err := call.Args().Token()
	if err != nil {
		return err
	}
	user, err := call.Args().User()
	if err != nil {
		return err
	}
	if len(token) == 0 || len(token) > MaxTokenSize {
		return ErrUnknownToken
	}
	if len(user) > 64 {
		return errors.New("the user name is longer than 64 bytes")
	}
	gs, info, err := g.shares.Restore(ctx, g.peer, user, token)
	if err != nil {
		if errors.Is(err, ErrUnknownToken) {
			return ErrUnknownToken
		}
		return fmt.Errorf("restore: %w", err)
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
	gi.SetTitle(info.Title)
	gi.SetAppName(info.AppName)
	gi.SetRole(info.Role)
	perms, err := gi.NewPermissions(int32(len(info.Permissions)))
	if err != nil {
		return err
	}
	for i, p := range info.Permissions {
		perms.Set(i, p)
	}
	return nil
}

// Restore asks a friend's node (through its Gateway) for the grain behind
// token, for user. The caller releases the returned Grain.
func Restore(ctx context.Context, gw Gateway, token []byte, user string) (Grain, ShareInfo, error) {
	fut, release := gw.Restore(ctx, func(p Gateway_restore_Params) error {
		if err := p.SetToken(token); err != nil {
			return err
		}
		return p.SetUser(user)
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		return Grain{}, ShareInfo{}, remoteRestoreError(err)
	}
	var info ShareInfo
	if gi, err := res.Info(); err == nil {
		info.Title, _ = gi.Title()
		info.AppName, _ = gi.AppName()
		info.Role, _ = gi.Role()
		if ps, err := gi.Permissions(); err == nil {
			for i := 0; i < ps.Len(); i++ {
				p, _ := ps.At(i)
				info.Permissions = append(info.Permissions, p)
			}
		}
	}
	return res.Grain().AddRef(), info, nil
}

func remoteRestoreError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, ErrUnknownToken.Error()):
		return ErrUnknownToken
	case strings.Contains(msg, ErrTooManyRestores.Error()):
		return ErrTooManyRestores
	}
	return fmt.Errorf("friend's node: %w", err)
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
