package erg

import (
	"context"
	"time"
)

// Duration is a time.Duration that travels in JSON as Go's text form
// ("1h30m0s"), so the API's durations read the same to people and programs.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Status describes the running node.
type Status struct {
	Version   string   `json:"version"`
	DataDir   string   `json:"dataDir"`
	URL       string   `json:"url"`
	Sandbox   string   `json:"sandbox"` // "root" or "unprivileged"
	Cgroups   string   `json:"cgroups"` // "v2", "v1" or "none"
	NodeID    string   `json:"nodeId"`
	Name      string   `json:"name,omitempty"` // what friends call the node
	Apps      int      `json:"apps"`
	Grains    int      `json:"grains"`
	Running   int      `json:"running"`
	Uptime    Duration `json:"uptime"`
	GrainIdle Duration `json:"grainIdle"`
	// The node's libp2p side: peer id, full listen multiaddrs, connected
	// peers and DHT routing table size.
	PeerID       string   `json:"peerId,omitempty"`
	P2PAddrs     []string `json:"p2pAddrs,omitempty"`
	Peers        int      `json:"peers"`
	RoutingTable int      `json:"routingTable"`
	// How other nodes reach this one: Reachability is "reachable",
	// "mapped" (behind NAT, the router forwards a port), "relayed",
	// "unreachable", "checking" or "local" (listening on loopback only);
	// ReachabilityText says it in words, ReachableAddrs are the addresses
	// that work from the internet (or through relays).
	Reachability     string   `json:"reachability,omitempty"`
	ReachabilityText string   `json:"reachabilityText,omitempty"`
	ReachableAddrs   []string `json:"reachableAddrs,omitempty"`
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
	APIPath        string   `json:"apiPath,omitempty"` // where it serves its API; "": it has none
	Offers         []string `json:"offers,omitempty"`  // the APIs it serves there
	Grains         int      `json:"grains"`            // grains of this app on the node, anyone's
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
	// Usage is set for the grain's owner only (and for the node's owner
	// in AllGrains).
	Usage *GrainUsage `json:"usage,omitempty"`
}

// NodeGrain is a grain in the owner's list of every grain on the node.
type NodeGrain struct {
	Grain
	// Size is the bytes its /var takes on disk, Usage.DiskBytes: what its
	// disk bound counts (blocks in use; on its own image, the image's),
	// measured at most every 30 s. Until December 2026 it summed its
	// files' lengths, which is less for small files (each takes a block)
	// and more for sparse ones.
	Size int64 `json:"size"`
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

// GrainToken lets a program that is not a browser (a CalDAV or WebDAV
// client, git, a script) use one grain's API with a role, on the node's
// API origin (api.<domain>). Token and URL are set only when it is made:
// Token is the secret, which the node keeps only a hash of.
type GrainToken struct {
	ID      string    `json:"id"`
	GrainID string    `json:"grainId"`
	Role    string    `json:"role"`
	Label   string    `json:"label,omitempty"`
	ForUser string    `json:"forUser,omitempty"` // the grain sees this username; empty: no name
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	// LastUsed is when a request last came with it, to the minute.
	LastUsed time.Time `json:"lastUsed,omitzero"`
	Token    string    `json:"token,omitempty"`
	URL      string    `json:"url,omitempty"` // the API origin to send it to
}

// GrainTokenRequest is what a new grain API token should be.
type GrainTokenRequest struct {
	Role  string `json:"role"`
	Label string `json:"label,omitempty"`
	// ForUser names a local user the grain is told the token's requests
	// come from; empty: they come from no one by name.
	ForUser string `json:"forUser,omitempty"`
	// ExpiresIn is in seconds; 0 means never.
	ExpiresIn int64 `json:"expiresIn,omitempty"`
}

// PowerboxQuery is what a grain asks the powerbox for: a grain of one app
// (by id or name), or a grain whose app offers an API (its manifest's
// "offers"). Permissions, if set, are what the grain needs: a grain the
// user holds with fewer is not offered.
type PowerboxQuery struct {
	App         string   `json:"app,omitempty"`
	API         string   `json:"api,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
}

// PowerboxOption is a grain the user may pick for a powerbox request,
// with the roles they may grant: their own and those with fewer
// permissions.
type PowerboxOption struct {
	GrainID string `json:"grainId"`
	Title   string `json:"title"`
	AppName string `json:"appName"`
	Owner   string `json:"owner,omitempty"`
	From    string `json:"from,omitempty"` // the friend's node a friend's grain lives on
	Roles   []Role `json:"roles"`
}

// PowerboxPick is the user's answer to a powerbox request.
type PowerboxPick struct {
	Target string `json:"target"`
	Role   string `json:"role"`
	Label  string `json:"label,omitempty"`
}

// Grant is a durable connection from one grain to another that a user
// granted through the powerbox: the requesting grain reaches the target,
// through its bridge, with the role, as that user. Token is set only when
// the grant is claimed: it is the secret the grain's server keeps.
type Grant struct {
	ID             string    `json:"id"`
	Requester      string    `json:"requester"`
	RequesterTitle string    `json:"requesterTitle,omitempty"`
	Target         string    `json:"target"`
	TargetTitle    string    `json:"targetTitle,omitempty"`
	Role           string    `json:"role"`
	Label          string    `json:"label,omitempty"`
	User           string    `json:"user"` // who granted it
	Created        time.Time `json:"created"`
	Token          string    `json:"token,omitempty"`
}

// Viewer is who is asking, as the grain will be told.
type Viewer struct {
	UserID      string // stable per user and grain; empty for anonymous users
	Username    string // empty for anonymous users
	Permissions []string
	SessionID   string
	// Session is cancelled when the session loses its access (its share
	// was revoked, its user removed, its grain deleted): open requests and
	// websockets on it are cut at once. Nil for a session never cut so.
	Session context.Context
	// Expires is when the session (or the share it came through) ends;
	// open requests and websockets are cut then too.
	Expires time.Time
	// Account is the node's own id for the user (not told to the grain;
	// the same across grains), "" for an anonymous visitor. Limits per
	// user count by it.
	Account string
}

// Listing is an app-store listing as the API shows it.
type Listing struct {
	AppID          string   `json:"appId"`
	Name           string   `json:"name"`
	Summary        string   `json:"summary,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion,omitempty"`
	Package        string   `json:"package"`
	Descriptor     string   `json:"descriptor"`
	Icon           string   `json:"icon,omitempty"`
	Publisher      string   `json:"publisher"`
	// Installed is the version installed on this node, 0 if none.
	Installed int64 `json:"installed,omitempty"`
	// Score and Peers are set by search: rank, and how many publishers
	// served it.
	Score int `json:"score,omitempty"`
	Peers int `json:"peers,omitempty"`
}

// SearchReport is the answer to a store search.
type SearchReport struct {
	Results []Listing `json:"results"`
	// Problems name peers whose answers were refused, and why.
	Problems []string `json:"problems,omitempty"`
	Peers    int      `json:"peers"`
}

// FetchProgress reports a package download: the figures of a fetching
// InstallStep, as an install's event stream also sends them.
type FetchProgress struct {
	Bytes   int64    `json:"bytes"`
	Blocks  int      `json:"blocks"`
	Peers   int      `json:"peers"`
	Elapsed Duration `json:"elapsed"`
}

// Friend is another node this node shares grains with.
type Friend struct {
	Name   string   `json:"name"`   // what this node calls it: "user@Name"
	Peer   string   `json:"peerId"` // its libp2p peer id
	Addrs  []string `json:"addrs,omitempty"`
	Online bool     `json:"online"`
	// Path is how this node is connected to the friend's now: "direct",
	// or "relayed" (through a relay, as when both are behind NATs that
	// hole punching could not cross); empty when offline.
	Path  string    `json:"path,omitempty"`
	Added time.Time `json:"added"`
}

// FriendInvite is a one-time code another node's owner pastes to become
// this node's friend.
type FriendInvite struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// The phases of an install, in order: a store install fetches, then every
// install verifies and unpacks.
const (
	PhaseFetching  = "fetching"
	PhaseVerifying = "verifying"
	PhaseUnpacking = "unpacking"
)

// InstallStep is one progress event of a package install: a phase, with
// the bytes done so far and the total (0 while unknown, as during a
// fetch). A fetch's steps also say how many blocks arrived, from how many
// providers, and how long it has taken.
type InstallStep struct {
	Phase   string   `json:"phase"`
	Done    int64    `json:"done"`
	Total   int64    `json:"total"`
	Blocks  int      `json:"blocks,omitempty"`
	Peers   int      `json:"peers,omitempty"`
	Elapsed Duration `json:"elapsed,omitempty"`
}

// InstallProgress hears an install's steps as they go; it is never
// called twice at once. A nil InstallProgress hears nothing.
type InstallProgress func(InstallStep)

// Report calls p with s, if p is set.
func (p InstallProgress) Report(s InstallStep) {
	if p != nil {
		p(s)
	}
}
