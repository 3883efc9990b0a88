package erg

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Client calls a running node's JSON API, over its unix socket (as the
// owner) or over HTTP with an API token (as the token's user).
type Client struct {
	socket string // "" for HTTP
	base   string // the node's URL, or http://erg on the socket
	token  string
	http   *http.Client
}

// NewClient returns a client for the node listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		socket: socket,
		base:   "http://erg",
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// NewHTTPClient returns a client for the node at baseURL (such as
// http://localhost:6080) that authenticates with an API token.
func NewHTTPClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: hc}
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/api/status", nil, &s)
}

// Apps lists installed apps.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	return apps, c.do(ctx, "GET", "/api/apps", nil, &apps)
}

// InstallPackage uploads a signed package file to the node, which
// verifies and installs it.
func (c *Client) InstallPackage(ctx context.Context, pkg io.Reader) (App, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/apps", pkg)
	if err != nil {
		return App{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.erg.package")
	resp, err := c.send(req)
	if err != nil {
		return App{}, err
	}
	defer resp.Body.Close()
	var app App
	if err := json.NewDecoder(resp.Body).Decode(&app); err != nil {
		return App{}, fmt.Errorf("node sent a malformed reply to the install: %w", err)
	}
	return app, nil
}

// Grains lists the user's grains and those shared with them.
func (c *Client) Grains(ctx context.Context) ([]Grain, error) {
	var gs []Grain
	return gs, c.do(ctx, "GET", "/api/grains", nil, &gs)
}

// AllGrains lists every grain on the node with its size on disk; only the
// node's owner may.
func (c *Client) AllGrains(ctx context.Context) ([]NodeGrain, error) {
	var gs []NodeGrain
	return gs, c.do(ctx, "GET", "/api/grains?all=1", nil, &gs)
}

// NewGrain creates a grain of app (an app id or name).
func (c *Client) NewGrain(ctx context.Context, app, title string) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "POST", "/api/grains", NewGrainRequest{App: app, Title: title}, &g)
}

// OpenGrain returns the grain with a fresh one-time login URL.
func (c *Client) OpenGrain(ctx context.Context, id string) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "POST", "/api/grains/"+url.PathEscape(id)+"/open", nil, &g)
}

// RemoveGrain stops and deletes a grain and its data: one of the caller's,
// or any grain on the node when the caller is the owner.
func (c *Client) RemoveGrain(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/grains/"+url.PathEscape(id), nil, nil)
}

// RenameGrain sets a grain's title.
func (c *Client) RenameGrain(ctx context.Context, id, title string) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "PATCH", "/api/grains/"+url.PathEscape(id), RenameRequest{Title: title}, &g)
}

// SetGrainLimits sets the node owner's limits for a grain (see
// GrainLimitsRequest) and returns the grain with its usage and limits.
func (c *Client) SetGrainLimits(ctx context.Context, id string, req GrainLimitsRequest) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "PATCH", "/api/grains/"+url.PathEscape(id)+"/limits", req, &g)
}

// BackupGrain writes the grain's backup zip to w.
func (c *Client) BackupGrain(ctx context.Context, id string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/api/grains/"+url.PathEscape(id)+"/backup", nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// RestoreGrain makes a new grain from a backup zip.
func (c *Client) RestoreGrain(ctx context.Context, zip io.Reader) (Grain, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/grains/restore", zip)
	if err != nil {
		return Grain{}, err
	}
	req.Header.Set("Content-Type", "application/zip")
	resp, err := c.send(req)
	if err != nil {
		return Grain{}, err
	}
	defer resp.Body.Close()
	var g Grain
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		return Grain{}, fmt.Errorf("node sent a malformed reply to the restore: %w", err)
	}
	return g, nil
}

// Shares lists a grain's shares.
func (c *Client) Shares(ctx context.Context, grainID string) ([]Share, error) {
	var s []Share
	return s, c.do(ctx, "GET", "/api/grains/"+url.PathEscape(grainID)+"/shares", nil, &s)
}

// NewShare makes a sharing link to a grain.
func (c *Client) NewShare(ctx context.Context, grainID string, req ShareRequest) (Share, error) {
	var s Share
	return s, c.do(ctx, "POST", "/api/grains/"+url.PathEscape(grainID)+"/shares", req, &s)
}

// RevokeShare ends a share and every session opened through it.
func (c *Client) RevokeShare(ctx context.Context, shareID string) error {
	return c.do(ctx, "DELETE", "/api/shares/"+url.PathEscape(shareID), nil, nil)
}

// GrainTokens lists a grain's API tokens, without their secrets.
func (c *Client) GrainTokens(ctx context.Context, grainID string) ([]GrainToken, error) {
	var t []GrainToken
	return t, c.do(ctx, "GET", "/api/grains/"+url.PathEscape(grainID)+"/tokens", nil, &t)
}

// NewGrainToken makes an API token for a grain; its secret is in the
// answer only.
func (c *Client) NewGrainToken(ctx context.Context, grainID string, req GrainTokenRequest) (GrainToken, error) {
	var t GrainToken
	return t, c.do(ctx, "POST", "/api/grains/"+url.PathEscape(grainID)+"/tokens", req, &t)
}

// RevokeGrainToken revokes a grain's API token; the next request with it
// is refused and open ones are cut.
func (c *Client) RevokeGrainToken(ctx context.Context, tokenID string) error {
	return c.do(ctx, "DELETE", "/api/grain-tokens/"+url.PathEscape(tokenID), nil, nil)
}

// Grants lists the powerbox grants a grain holds and those made to it
// (its Connections), as far as the caller may see them.
func (c *Client) Grants(ctx context.Context, grainID string) ([]Grant, error) {
	var g []Grant
	return g, c.do(ctx, "GET", "/api/grains/"+url.PathEscape(grainID)+"/grants", nil, &g)
}

// RevokeGrant ends a powerbox grant: its next use is refused and open
// requests through it are cut.
func (c *Client) RevokeGrant(ctx context.Context, grantID string) error {
	return c.do(ctx, "DELETE", "/api/grants/"+url.PathEscape(grantID), nil, nil)
}

// Users lists the node's users.
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var u []User
	return u, c.do(ctx, "GET", "/api/users", nil, &u)
}

// Invites lists open invites.
func (c *Client) Invites(ctx context.Context) ([]Invite, error) {
	var inv []Invite
	return inv, c.do(ctx, "GET", "/api/invites", nil, &inv)
}

// InviteUser makes a one-time invite link for a new user.
func (c *Client) InviteUser(ctx context.Context, username string) (Invite, error) {
	var inv Invite
	return inv, c.do(ctx, "POST", "/api/invites", InviteRequest{Username: username}, &inv)
}

// CancelInvite withdraws an open invite.
func (c *Client) CancelInvite(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/invites/"+url.PathEscape(id), nil, nil)
}

// RemoveUser deletes a user with their grains.
func (c *Client) RemoveUser(ctx context.Context, username string) error {
	return c.do(ctx, "DELETE", "/api/users/"+url.PathEscape(username), nil, nil)
}

// NewAPIToken makes an API token for the calling user.
func (c *Client) NewAPIToken(ctx context.Context, label string) (APIToken, error) {
	var t APIToken
	return t, c.do(ctx, "POST", "/api/tokens", TokenRequest{Label: label}, &t)
}

// APITokens lists the calling user's API tokens.
func (c *Client) APITokens(ctx context.Context) ([]APIToken, error) {
	var t []APIToken
	return t, c.do(ctx, "GET", "/api/tokens", nil, &t)
}

// RemoveAPIToken revokes an API token.
func (c *Client) RemoveAPIToken(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/tokens/"+url.PathEscape(id), nil, nil)
}

// GrainLog returns the grain's recent output.
func (c *Client) GrainLog(ctx context.Context, id string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/api/grains/"+url.PathEscape(id)+"/log", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("node sent a malformed reply to %s %s: %w", method, path, err)
	}
	return nil
}

// send performs the request and turns failures into errors a person can
// act on.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if c.socket == "" {
			return nil, fmt.Errorf("cannot reach the node at %s: %w", c.base, err)
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no node is running with socket %s: start one with `erg run`, or pass --data", c.socket)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot reach %s: permission denied (run as the node's user)", c.socket)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, replyError(resp)
	}
	return resp, nil
}

// PublishPackage uploads a package file and its signed listing.
func (c *Client) PublishPackage(ctx context.Context, listing []byte, pkg io.Reader) (Listing, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://erg/api/store/publish?listing="+base64URL.EncodeToString(listing), pkg)
	if err != nil {
		return Listing{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.erg.package")
	resp, err := c.send(req)
	if err != nil {
		return Listing{}, err
	}
	defer resp.Body.Close()
	var l Listing
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return Listing{}, fmt.Errorf("node sent a malformed reply to the publish: %w", err)
	}
	return l, nil
}

// SearchStore searches the app store.
func (c *Client) SearchStore(ctx context.Context, query string) (SearchReport, error) {
	var rep SearchReport
	return rep, c.do(ctx, "GET", "/api/store/search?q="+url.QueryEscape(query), nil, &rep)
}

// ShowListing returns an app's newest listing.
func (c *Client) ShowListing(ctx context.Context, appID string) (Listing, error) {
	var l Listing
	return l, c.do(ctx, "GET", "/api/store/apps/"+url.PathEscape(appID), nil, &l)
}

// StoreUpdates lists installed apps the store has newer versions of.
func (c *Client) StoreUpdates(ctx context.Context) ([]Listing, error) {
	var ls []Listing
	return ls, c.do(ctx, "GET", "/api/store/updates", nil, &ls)
}

// InstallFromStore asks the node to install an app from the store,
// calling progress with each step: fetching, verifying, unpacking.
func (c *Client) InstallFromStore(ctx context.Context, appID string, progress InstallProgress) (App, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://erg/api/store/apps/"+url.PathEscape(appID)+"/install", nil)
	if err != nil {
		return App{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return App{}, err
	}
	defer resp.Body.Close()
	return readInstallEvents(resp.Body, progress)
}

// readInstallEvents reads an install's event stream, passing each step to
// progress, until the app or an error. A line with only the older
// Progress form is a fetching step.
func readInstallEvents(r io.Reader, progress InstallProgress) (App, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxAPIBody)
	for sc.Scan() {
		var ev InstallEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return App{}, fmt.Errorf("node sent a malformed install event: %w", err)
		}
		switch {
		case ev.App != nil:
			return *ev.App, nil
		case ev.Error != "":
			return App{}, &Error{Kind: ev.Kind, Msg: ev.Error}
		case ev.Step != nil:
			progress.Report(*ev.Step)
		case ev.Progress != nil:
			p := ev.Progress
			progress.Report(InstallStep{Phase: PhaseFetching, Done: p.Bytes, Blocks: p.Blocks, Peers: p.Peers, Elapsed: p.Elapsed})
		}
	}
	if err := sc.Err(); err != nil {
		return App{}, err
	}
	return App{}, io.ErrUnexpectedEOF
}

var base64URL = base64.RawURLEncoding

// Friends lists the node's friends.
func (c *Client) Friends(ctx context.Context) ([]Friend, error) {
	var out []Friend
	err := c.do(ctx, http.MethodGet, "/api/friends", nil, &out)
	return out, err
}

// NewFriendInvite makes a one-time friend invite code.
func (c *Client) NewFriendInvite(ctx context.Context) (FriendInvite, error) {
	var out FriendInvite
	err := c.do(ctx, http.MethodPost, "/api/friends/invite", nil, &out)
	return out, err
}

// AddFriend redeems another node's invite code.
func (c *Client) AddFriend(ctx context.Context, code string) (Friend, error) {
	var out Friend
	err := c.do(ctx, http.MethodPost, "/api/friends", map[string]string{"code": code}, &out)
	return out, err
}

// RemoveFriend forgets a friend.
func (c *Client) RemoveFriend(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/friends/"+url.PathEscape(name), nil, nil)
}

// InstallPackageProgress is InstallPackage that reports the node's
// verifying and unpacking as they go.
func (c *Client) InstallPackageProgress(ctx context.Context, pkg io.Reader, progress InstallProgress) (App, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/apps", pkg)
	if err != nil {
		return App{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.erg.package")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return App{}, err
	}
	defer resp.Body.Close()
	return readInstallEvents(resp.Body, progress)
}

// replyError reads a failed call's ErrorReply. A body that is not one (a
// proxy's page, an older node) keeps its text and takes its kind from the
// status.
func replyError(resp *http.Response) error {
	var e ErrorReply
	data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxAPIBody))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
		e.Kind = kindOfStatus(resp.StatusCode)
	}
	if e.Kind == Internal {
		return fmt.Errorf("node: %s (HTTP %d)", e.Error, resp.StatusCode)
	}
	return e.Err()
}

// kindOfStatus is the kind whose HTTPStatus code is; a gateway's 502 or
// 504 is Unavailable too.
func kindOfStatus(code int) Kind {
	if code == http.StatusBadGateway || code == http.StatusGatewayTimeout {
		return Unavailable
	}
	for k, n := range kindNames {
		if n.status == code {
			return Kind(k)
		}
	}
	return Internal
}
