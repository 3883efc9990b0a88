package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Client calls a running node's JSON API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the node listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
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
	req, err := http.NewRequestWithContext(ctx, "POST", "http://erg/api/apps", pkg)
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

// Grains lists the owner's grains.
func (c *Client) Grains(ctx context.Context) ([]Grain, error) {
	var gs []Grain
	return gs, c.do(ctx, "GET", "/api/grains", nil, &gs)
}

// NewGrain creates a grain of app (an app id or name).
func (c *Client) NewGrain(ctx context.Context, app, title string) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "POST", "/api/grains", NewGrainRequest{App: app, Title: title}, &g)
}

// OpenGrain returns the grain with a fresh one-time login URL.
func (c *Client) OpenGrain(ctx context.Context, id string) (Grain, error) {
	var g Grain
	return g, c.do(ctx, "POST", "/api/grains/"+id+"/open", nil, &g)
}

// RemoveGrain stops and deletes a grain and its data.
func (c *Client) RemoveGrain(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/grains/"+id, nil, nil)
}

// GrainLog returns the grain's recent output.
func (c *Client) GrainLog(ctx context.Context, id string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://erg/api/grains/"+id+"/log", nil)
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
	req, err := http.NewRequestWithContext(ctx, method, "http://erg"+path, body)
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
	resp, err := c.http.Do(req)
	if err != nil {
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
		var e apiError
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		kind := ErrInvalid
		switch resp.StatusCode {
		case http.StatusNotFound:
			kind = ErrNotFound
		case http.StatusForbidden:
			kind = ErrForbidden
		case http.StatusBadRequest:
		default:
			return nil, fmt.Errorf("node: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, &remoteError{msg: e.Error, kind: kind}
	}
	return resp, nil
}

// remoteError carries the node's message unchanged while still matching
// the sentinel errors with errors.Is.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string        { return e.msg }
func (e *remoteError) Is(target error) bool { return target == e.kind }
