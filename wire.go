package erg

// The JSON API's request and reply bodies that are not domain types. The
// API names fields in camelCase, ids as <thing>Id, and durations as Go
// duration text (Duration).

// MaxAPIBody bounds every JSON body and event line of the API.
const MaxAPIBody = 1 << 20

// ErrorReply is the body of every failed API call: the error's text and
// its kind.
type ErrorReply struct {
	Error string `json:"error"`
	Kind  Kind   `json:"kind"`
}

// Err rebuilds the error an ErrorReply carries.
func (e ErrorReply) Err() error { return &Error{Kind: e.Kind, Msg: e.Error} }

// PasswordRequest is the body of POST /api/me/password.
type PasswordRequest struct {
	Current  string `json:"current"`
	Password string `json:"password"`
}

// NewGrainRequest is the body of POST /api/grains.
type NewGrainRequest struct {
	App   string `json:"app"`
	Title string `json:"title"`
}

// RenameRequest is the body of PATCH /api/grains/{id}.
type RenameRequest struct {
	Title string `json:"title"`
}

// InviteRequest is the body of POST /api/invites.
type InviteRequest struct {
	Username string `json:"username"`
}

// TokenRequest is the body of POST /api/tokens.
type TokenRequest struct {
	Label string `json:"label"`
}

// InstallEvent is one line of an install's event stream: steps as the
// install goes, then the app or an error. A fetching step also carries
// its figures as Progress, the form clients before InstallStep read.
type InstallEvent struct {
	Progress *FetchProgress `json:"progress,omitempty"`
	Step     *InstallStep   `json:"step,omitempty"`
	App      *App           `json:"app,omitempty"`
	Error    string         `json:"error,omitempty"`
	Kind     Kind           `json:"kind,omitempty"`
}

// GrainLimitsRequest is the body of PATCH /api/grains/{id}/limits, the
// node owner's limits for one grain over its app's and the node's
// defaults. A field left out is left as it is; 0 goes back to the
// default. They apply from the grain's next start.
type GrainLimitsRequest struct {
	// CPUPercent is a CPU ceiling in percent of one core (200: two cores).
	CPUPercent *int `json:"cpuPercent,omitempty"`
}
