// Package webui is the node's HTTP face: the grain proxy that authenticates
// every request before it reaches a grain, the JSON API the CLI and pages
// use, and the client for that API.
package webui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Errors a Backend returns so the API can answer with the right status.
var (
	ErrNotFound  = errors.New("not found")
	ErrInvalid   = errors.New("invalid request")
	ErrForbidden = errors.New("forbidden")
)

// Status describes the running node.
type Status struct {
	Version   string        `json:"version"`
	DataDir   string        `json:"dataDir"`
	URL       string        `json:"url"`
	Sandbox   string        `json:"sandbox"` // "root" or "unprivileged"
	Cgroups   string        `json:"cgroups"` // "v2", "v1" or "none"
	NodeID    string        `json:"nodeId"`
	Apps      int           `json:"apps"`
	Grains    int           `json:"grains"`
	Running   int           `json:"running"`
	Uptime    time.Duration `json:"uptime"`
	GrainIdle time.Duration `json:"grainIdle"`
	// The node's libp2p side: peer id, full listen multiaddrs, connected
	// peers and DHT routing table size.
	PeerID       string   `json:"peerId,omitempty"`
	P2PAddrs     []string `json:"p2pAddrs,omitempty"`
	Peers        int      `json:"peers"`
	RoutingTable int      `json:"routingTable"`
}

// App is an installed app.
type App struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion"`
	Description    string   `json:"description,omitempty"`
	Actions        []string `json:"actions,omitempty"`
}

// Grain is one app instance.
type Grain struct {
	ID       string    `json:"id"`
	AppID    string    `json:"appId"`
	AppName  string    `json:"appName"`
	Title    string    `json:"title"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
	Running  bool      `json:"running"`
	// URL is set only by NewGrain and OpenGrain: it carries a one-time
	// login token.
	URL string `json:"url,omitempty"`
}

// Viewer is who is asking, as the grain will be told.
type Viewer struct {
	UserID      string // stable per user and grain
	Username    string
	Permissions []string
	SessionID   string
}

// Backend is what the node provides to the HTTP layer.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Apps(ctx context.Context) ([]App, error)
	// InstallPackage verifies a signed package file and installs or
	// upgrades its app.
	InstallPackage(ctx context.Context, r io.Reader) (App, error)
	Grains(ctx context.Context) ([]Grain, error)
	NewGrain(ctx context.Context, app, title string) (Grain, error)
	OpenGrain(ctx context.Context, id string) (Grain, error)
	RemoveGrain(ctx context.Context, id string) error
	GrainLog(ctx context.Context, id string) ([]byte, error)

	// GrainExists reports whether the grain exists, without starting it.
	GrainExists(ctx context.Context, id string) (bool, error)
	// RedeemLoginToken spends a one-time token and returns a session
	// token for the grain's origin.
	RedeemLoginToken(ctx context.Context, grainID, token string) (session string, err error)
	// GrainViewer authenticates a session token for the grain.
	GrainViewer(ctx context.Context, grainID, session string) (Viewer, error)
	// AcquireGrain starts the grain if it is not running and returns a
	// transport into it; release must be called when the request (or
	// websocket) is over, so the grain can go idle.
	AcquireGrain(ctx context.Context, grainID string) (rt http.RoundTripper, release func(), err error)
}
