// Package webui is the node's HTTP face: the pages people use (accounts,
// apps, grains, sharing), the grain proxy that authenticates every request
// before it reaches a grain, the JSON API the CLI and scripts use, and the
// client for that API.
package webui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Errors a Backend returns so the HTTP layer can answer with the right
// status.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid request")
	ErrForbidden    = errors.New("forbidden")
	ErrUnauthorized = errors.New("not signed in")
)

// Status describes the running node.
type Status struct {
	Version   string        `json:"version"`
	DataDir   string        `json:"dataDir"`
	URL       string        `json:"url"`
	Sandbox   string        `json:"sandbox"` // "root" or "unprivileged"
	Cgroups   string        `json:"cgroups"` // "v2", "v1" or "none"
	NodeID    string        `json:"nodeId"`
	Name      string        `json:"name,omitempty"` // what friends call the node
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

// User is a local account. The owner set the node up; other users were
// invited by the owner.
type User struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Owner    bool      `json:"owner,omitempty"`
	Created  time.Time `json:"created"`
}

// Invite is an open invitation for a new local user. URL is set only when
// the invite is made: it carries the one-time secret.
type Invite struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	URL      string    `json:"url,omitempty"`
}

// APIToken lets a program use the JSON API over HTTP as the user who made
// it. Token is set only when it is made.
type APIToken struct {
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
	Token   string    `json:"token,omitempty"`
}

// Role is a named set of permissions an app offers for sharing.
type Role struct {
	Name        string   `json:"name"`
	Title       string   `json:"title,omitempty"`
	Permissions []string `json:"permissions"`
}

// App is an installed app.
type App struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion"`
	Description    string   `json:"description,omitempty"`
	Actions        []string `json:"actions,omitempty"`
	Roles          []Role   `json:"roles,omitempty"`
	OwnerRole      string   `json:"ownerRole,omitempty"`
	HasIcon        bool     `json:"hasIcon,omitempty"`
	Grains         int      `json:"grains"` // grains of this app on the node, anyone's
}

// Grain is one app instance, as one user sees it.
type Grain struct {
	ID       string    `json:"id"`
	AppID    string    `json:"appId"`
	AppName  string    `json:"appName"`
	Title    string    `json:"title"`
	Owner    string    `json:"owner"` // the owner's username
	Mine     bool      `json:"mine"`  // false: shared with the asking user
	Role     string    `json:"role"`  // the asking user's role in it
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
	Running  bool      `json:"running"`
	// From names the friend's node a grain shared from another node lives
	// on; Revoked says its owner revoked the share.
	From    string `json:"from,omitempty"`
	Revoked bool   `json:"revoked,omitempty"`
	// URL is set only by NewGrain, OpenGrain and OpenShare: it carries a
	// one-time login token for the grain's origin.
	URL string `json:"url,omitempty"`
}

// NodeGrain is a grain in the owner's list of every grain on the node.
type NodeGrain struct {
	Grain
	Size int64 `json:"size"` // bytes of files in its /var
}

// Share is a capability to a grain with a role. URL is set only when the
// share is made: it carries the secret.
type Share struct {
	ID        string    `json:"id"`
	GrainID   string    `json:"grainId"`
	Role      string    `json:"role"`
	ForUser   string    `json:"forUser,omitempty"` // username; empty: anyone with the link
	Anonymous bool      `json:"anonymous"`
	Label     string    `json:"label,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"`
	Holders   []string  `json:"holders,omitempty"` // usernames who opened it
	// Friend is the friend's node a share was delivered to, and FriendUser
	// the user there it is for (empty: that node's owner).
	Friend     string `json:"friend,omitempty"`
	FriendUser string `json:"friendUser,omitempty"`
	URL        string `json:"url,omitempty"`
}

// ShareRequest is what a new share should be.
type ShareRequest struct {
	Role      string `json:"role"`
	ForUser   string `json:"forUser,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	Label     string `json:"label,omitempty"`
	// ExpiresIn is in seconds; 0 means never.
	ExpiresIn int64 `json:"expiresIn,omitempty"`
	// Friend, if set, delivers the share to that friend's node instead of
	// making a link; FriendUser names one user there.
	Friend     string `json:"friend,omitempty"`
	FriendUser string `json:"friendUser,omitempty"`
}

// Viewer is who is asking, as the grain will be told.
type Viewer struct {
	UserID      string // stable per user and grain; empty for anonymous users
	Username    string // empty for anonymous users
	Permissions []string
	SessionID   string
	// Done is closed when the session loses its access (its share was
	// revoked, its user removed, its grain deleted): open requests and
	// websockets on it are cut at once.
	Done <-chan struct{}
	// Expires is when the session (or the share it came through) ends;
	// open requests and websockets are cut then too.
	Expires time.Time
	// Account is the node's own id for the user (not told to the grain;
	// the same across grains), "" for an anonymous visitor. Limits per
	// user count by it.
	Account string
}

// Backend is what the node provides to the HTTP layer. Methods that take a
// User act on that user's behalf and check that they may.
type Backend interface {
	Status(ctx context.Context) (Status, error)

	// SetupNeeded reports whether the owner has not chosen a password yet.
	SetupNeeded(ctx context.Context) (bool, error)
	// Setup sets the owner's username and password with the one-time setup
	// token the node printed, and returns a web session.
	Setup(ctx context.Context, token, username, password string) (User, string, error)
	Login(ctx context.Context, username, password string) (User, string, error)
	Logout(ctx context.Context, session string) error
	// WebSession returns the user and CSRF token of a web session.
	WebSession(ctx context.Context, session string) (User, string, error)
	// ChangePassword sets a new password after checking the current one,
	// ends every web session of the user, and returns a new one.
	ChangePassword(ctx context.Context, who User, current, password string) (string, error)
	// Owner is the node's owner, whom the control socket acts for.
	Owner(ctx context.Context) (User, error)
	// TokenUser authenticates an API token.
	TokenUser(ctx context.Context, token string) (User, error)
	NewAPIToken(ctx context.Context, who User, label string) (APIToken, error)
	APITokens(ctx context.Context, who User) ([]APIToken, error)
	RemoveAPIToken(ctx context.Context, who User, id string) error

	Users(ctx context.Context, who User) ([]User, error)
	Invites(ctx context.Context, who User) ([]Invite, error)
	InviteUser(ctx context.Context, who User, username string) (Invite, error)
	CancelInvite(ctx context.Context, who User, id string) error
	// InviteInfo looks an invite up by its secret without spending it.
	InviteInfo(ctx context.Context, token string) (Invite, error)
	AcceptInvite(ctx context.Context, token, password string) (User, string, error)
	// RemoveUser deletes a user with their grains and shares.
	RemoveUser(ctx context.Context, who User, username string) error

	Apps(ctx context.Context) ([]App, error)
	AppIcon(ctx context.Context, id string) (data []byte, contentType string, err error)
	// InstallPackage verifies a signed package file and installs or
	// upgrades its app. Only the owner may; the caller checks.
	InstallPackage(ctx context.Context, r io.Reader) (App, error)
	RemoveApp(ctx context.Context, who User, id string) error

	// Grains lists the user's grains and the grains shared with them.
	Grains(ctx context.Context, who User) ([]Grain, error)
	Grain(ctx context.Context, who User, id string) (Grain, error)
	NewGrain(ctx context.Context, who User, app, title string) (Grain, error)
	// OpenGrain returns the grain with a one-time login URL for its origin.
	OpenGrain(ctx context.Context, who User, id string) (Grain, error)
	RenameGrain(ctx context.Context, who User, id, title string) (Grain, error)
	// AllGrains lists every grain on the node, anyone's, with its size on
	// disk. Only the owner may.
	AllGrains(ctx context.Context, who User) ([]NodeGrain, error)
	// RemoveGrain deletes one of the user's grains, or any grain when the
	// user is the node's owner.
	RemoveGrain(ctx context.Context, who User, id string) error
	GrainLog(ctx context.Context, who User, id string) ([]byte, error)
	// BackupGrain writes a zip of the grain's /var and its metadata.
	BackupGrain(ctx context.Context, who User, id string, w io.Writer) error
	// RestoreGrain makes a new grain from a backup zip.
	RestoreGrain(ctx context.Context, who User, r io.Reader) (Grain, error)

	Shares(ctx context.Context, who User, grainID string) ([]Share, error)
	NewShare(ctx context.Context, who User, grainID string, req ShareRequest) (Share, error)
	RevokeShare(ctx context.Context, who User, shareID string) error
	// OpenShare spends nothing: it checks a share link's secret and returns
	// the grain with a login URL. who is nil for an anonymous visitor; a
	// local user who opens a link gets the grain in "shared with me".
	OpenShare(ctx context.Context, who *User, token string) (Grain, error)

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
