// Package webui is the node's HTTP face: the pages people use (accounts,
// apps, grains, sharing, friends, the store), the grain proxy that
// authenticates every request before it reaches a grain, and the JSON API
// the CLI and scripts use (its client is erg.Client). It translates
// between HTTP and the domain's types and error kinds; it holds no state
// of the node's.
package webui

import (
	"context"
	"net/http"

	"erg"
	"erg/accounts"
	"erg/apitokens"
	"erg/backup"
	"erg/friends"
	"erg/grains"
	"erg/install"
	"erg/powerbox"
	"erg/shares"
	"erg/store"
)

// Services is what the web port serves: the feature services the node
// built, and the node itself for what spans them. Every one is
// required: the node builds them all.
type Services struct {
	Node      Backend
	Accounts  *accounts.Service
	Store     *store.Service
	Friends   *friends.Service
	Grains    *grains.Service
	Shares    *shares.Service
	Installer *install.Installer
	APITokens *apitokens.Service // grains' API tokens
	Powerbox  *powerbox.Service  // grants between grains
	Backups   *backup.Service
}

// Backend is what spans the features, which only the node can answer: its
// status, removing a user with everything theirs, and grains whether they
// run here or on a friend's node (one handle for both). Everything else
// the pages and the API call on the feature services themselves. Methods
// that take a User act on that user's behalf and check that they may.
type Backend interface {
	Status(ctx context.Context) (erg.Status, error)

	// RemoveUser deletes a user with their grains and shares.
	RemoveUser(ctx context.Context, who erg.User, username string) error

	// Grains lists the user's grains and the grains shared with them.
	Grains(ctx context.Context, who erg.User) ([]erg.Grain, error)
	Grain(ctx context.Context, who erg.User, id string) (erg.Grain, error)
	// OpenGrain returns the grain with a one-time login URL for its origin.
	OpenGrain(ctx context.Context, who erg.User, id string) (erg.Grain, error)

	// ResolveGrain finds a grain served on a grain origin of this node,
	// one of its own or one a friend's node shared, without starting it.
	// A grain there is none of is an erg.ErrNotFound.
	ResolveGrain(ctx context.Context, id string) (GrainHandle, error)
}

// GrainHandle is a grain served on this node's web port, whether it runs
// here or on a friend's node.
type GrainHandle interface {
	// Redeem spends a one-time login token and returns a session token
	// for the grain's origin.
	Redeem(ctx context.Context, token string) (session string, err error)
	// Viewer authenticates a session token for the grain.
	Viewer(ctx context.Context, session string) (erg.Viewer, error)
	// Acquire starts the grain if it is not running (or reaches it on its
	// node) and returns a transport into it; release must be called when
	// the request (or websocket) is over, so the grain can go idle.
	Acquire(ctx context.Context) (rt http.RoundTripper, release func(), err error)
}
