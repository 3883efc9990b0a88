// Package fedgrains is the grains shared between this node and its
// friends' nodes over Cap'n Proto: those this node's users share with
// friends (served.go: the owner's side), and those friends' nodes shared
// with this node's users (remote.go: the friend's side), served on this
// node's grain origins like its own grains. It answers friends' calls
// (fed.Shares, less Unfriend) for package friends, whose connections it
// calls in turn.
//
// It is not part of package friends because package grains (through
// webui) imports friends.
package fedgrains

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"

	"erg/accounts"
	"erg/fed"
	"erg/friends"
	"erg/grains"
)

// errShareRevoked is what this node's user sees for a grain whose owner
// revoked the share.
var errShareRevoked = errors.New("the owner revoked this share")

var _ friends.Shares = (*Service)(nil)

// Config is what a Service needs; all but Log are required.
type Config struct {
	DB       *sql.DB
	Grains   *grains.Service   // this node's grains, served to friends, and the sessions on friends' grains
	Accounts *accounts.Service // the users shares are made for and delivered to
	// Derive makes a stable identifier from the node's key and parts.
	Derive func(parts ...string) string
	// Origin is a grain's origin on this node's web port.
	Origin func(grainID string) string
	Log    *slog.Logger // default: discard
}

// Service is the grains shared between this node and friends' nodes. Its
// methods are safe to call concurrently.
type Service struct {
	db       *sql.DB
	grains   *grains.Service
	accounts *accounts.Service
	derive   func(parts ...string) string
	origin   func(grainID string) string
	log      *slog.Logger
	bg       sync.WaitGroup

	// friends is the friends service, set once by Serve; ready is closed
	// then. Friends' calls, which may arrive while friends.New starts,
	// wait for it.
	friends *friends.Service
	ready   chan struct{}

	mu sync.Mutex
	// servers are live grain capabilities given to friends, by share id.
	servers map[string]map[*fed.GrainServer]struct{}
	// remote caches grains friends shared with this node, by local id.
	remote map[string]*remoteGrain
}

// New loads the grains friends shared with this node. Pass the Service
// as friends.Config.Shares (and its Forgetting as Config.Forgetting), then
// the friends service to Serve.
func New(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{
		db:       cfg.DB,
		grains:   cfg.Grains,
		accounts: cfg.Accounts,
		derive:   cfg.Derive,
		origin:   cfg.Origin,
		log:      cfg.Log,
		ready:    make(chan struct{}),
		servers:  map[string]map[*fed.GrainServer]struct{}{},
		remote:   map[string]*remoteGrain{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.loadRemote(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Serve gives s the friends service it calls, and starts answering
// friends' calls; call it once.
func (s *Service) Serve(fs *friends.Service) {
	s.friends = fs
	close(s.ready)
}

// await waits for Serve.
func (s *Service) await(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close waits for the revocations s is still telling friends of; close
// the friends service and its host first, so they end soon.
func (s *Service) Close() { s.bg.Wait() }

// Forgetting is for friends.Config.Forgetting: as a friend is forgotten,
// once its row is gone, with the shares made for it and the grains it
// shared (ON DELETE CASCADE), the live capabilities of those shares end
// and the grains it shared are forgotten.
func (s *Service) Forgetting(ctx context.Context, peerID string) (func(), error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM shares WHERE friend_peer = ?`, peerID)
	if err != nil {
		return nil, err
	}
	var shareIDs []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		shareIDs = append(shareIDs, id)
	}
	rows.Close()
	return func() {
		for _, id := range shareIDs {
			s.revokeServers(id)
		}
		s.forgetRemote(func(g *remoteGrain) bool { return g.peer == peerID })
	}, nil
}

// ForgetUser forgets the grains friends shared with a removed user (the
// database dropped them with the user).
func (s *Service) ForgetUser(userID string) {
	s.forgetRemote(func(g *remoteGrain) bool { return g.userID == userID })
}

func (s *Service) forgetRemote(match func(*remoteGrain) bool) {
	s.mu.Lock()
	gone := map[string]bool{}
	for id, g := range s.remote {
		if match(g) {
			gone[id] = true
			delete(s.remote, id)
		}
	}
	s.mu.Unlock()
	s.grains.Sessions().Drop(func(se grains.Session) bool { return gone[se.GrainID] })
}
