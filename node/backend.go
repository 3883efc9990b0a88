package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"erg/appstore"
	"erg/webui"
)

// loginTokenTTL is how long a printed grain link stays usable.
const loginTokenTTL = 5 * time.Minute

// sessionTTL is how long a grain-origin session lasts.
const sessionTTL = 30 * 24 * time.Hour

// grainInfo is the in-memory copy of a grain's row and its app, so the
// proxy's hot path reads no database.
type grainInfo struct {
	id       string
	appID    string
	title    string
	created  time.Time
	lastUsed time.Time
	app      *appstore.Manifest
	tree     string
}

// sessionEntry is a grain session known to be in the database.
type sessionEntry struct {
	grainID   string
	expires   time.Time
	userID    string // what the grain is told, derived once
	sessionID string
}

var _ webui.Backend = (*Node)(nil)

func (n *Node) loadGrains(ctx context.Context) error {
	rows, err := n.db.QueryContext(ctx, `SELECT g.id, g.app_id, g.title, g.created_at, g.last_used, a.manifest, a.tree
		FROM grains g JOIN apps a ON a.id = g.app_id`)
	if err != nil {
		return fmt.Errorf("load grains: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g grainInfo
		var created, used int64
		var manifest string
		if err := rows.Scan(&g.id, &g.appID, &g.title, &created, &used, &manifest, &g.tree); err != nil {
			return fmt.Errorf("load grains: %w", err)
		}
		if err := json.Unmarshal([]byte(manifest), &g.app); err != nil {
			return fmt.Errorf("load grains: app %s: %w", g.appID, err)
		}
		g.created, g.lastUsed = time.Unix(created, 0), time.Unix(used, 0)
		n.cache[g.id] = &g
	}
	return rows.Err()
}

func (n *Node) grain(id string) (*grainInfo, error) {
	n.mu.RLock()
	g := n.cache[id]
	n.mu.RUnlock()
	if g == nil {
		return nil, fmt.Errorf("%w: no grain %q", webui.ErrNotFound, id)
	}
	return g, nil
}

func (n *Node) grainDir(id string) string { return filepath.Join(n.cfg.DataDir, grainsDir, id) }

// runSpec tells the grain manager how to start a grain right now.
func (n *Node) runSpec(id string) (runSpec, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	g := n.cache[id]
	if g == nil {
		return runSpec{}, fmt.Errorf("%w: no grain %q", webui.ErrNotFound, id)
	}
	m := g.app
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=/var",
		"TMPDIR=/tmp",
		fmt.Sprintf("PORT=%d", m.Port),
	}
	env = append(env, m.Env...)
	var s runSpec
	s.Name = "g-" + id
	s.Root = g.tree
	s.Var = filepath.Join(n.grainDir(id), "var")
	s.Args = m.Command
	s.Env = env
	s.Limits.MemoryBytes = int64(m.Limits.MemoryMB) << 20
	s.Limits.Pids = m.Limits.Pids
	s.Port = m.Port
	return s, nil
}

// touchGrain records when a grain was last used. It is called when a
// grain starts and stops, not per request, so requests never wait on a
// database write.
func (n *Node) touchGrain(id string, t time.Time) {
	n.mu.Lock()
	if g := n.cache[id]; g != nil {
		g.lastUsed = t
	}
	n.mu.Unlock()
	if _, err := n.db.Exec(`UPDATE grains SET last_used = ? WHERE id = ?`, t.Unix(), id); err != nil {
		n.log.Warn("record grain use", "grain", id, "err", err)
	}
}

// Status implements webui.Backend.
func (n *Node) Status(ctx context.Context) (webui.Status, error) {
	var apps int
	if err := n.db.QueryRowContext(ctx, `SELECT count(*) FROM apps`).Scan(&apps); err != nil {
		return webui.Status{}, err
	}
	n.mu.RLock()
	grains := len(n.cache)
	n.mu.RUnlock()
	st := webui.Status{
		Version:   n.cfg.Version,
		DataDir:   n.cfg.DataDir,
		URL:       n.URL(),
		Sandbox:   n.runner.Mode(),
		Cgroups:   n.runner.Cgroups(),
		NodeID:    n.NodeID(),
		Apps:      apps,
		Grains:    grains,
		Running:   n.grains.runningCount(),
		Uptime:    time.Since(n.started).Round(time.Second),
		GrainIdle: n.cfg.GrainIdle,
	}
	n.p2pStatus(&st)
	return st, nil
}

// Apps implements webui.Backend.
func (n *Node) Apps(ctx context.Context) ([]webui.App, error) {
	rows, err := n.db.QueryContext(ctx, `SELECT manifest FROM apps ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	apps := []webui.App{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var m appstore.Manifest
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return nil, err
		}
		apps = append(apps, appInfo(&m))
	}
	return apps, rows.Err()
}

func appInfo(m *appstore.Manifest) webui.App {
	a := webui.App{ID: m.ID, Name: m.Name, Version: m.Version, DisplayVersion: m.DisplayVersion, Description: m.Description}
	for _, act := range m.Actions {
		a.Actions = append(a.Actions, act.Title)
	}
	return a
}

func (n *Node) toAPI(g *grainInfo) webui.Grain {
	return webui.Grain{
		ID: g.id, AppID: g.appID, AppName: g.app.Name, Title: g.title,
		Created: g.created, LastUsed: g.lastUsed, Running: n.grains.running(g.id),
	}
}

// Grains implements webui.Backend.
func (n *Node) Grains(ctx context.Context) ([]webui.Grain, error) {
	n.mu.RLock()
	out := make([]webui.Grain, 0, len(n.cache))
	for _, g := range n.cache {
		out = append(out, n.toAPI(g))
	}
	n.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// findApp resolves an app by id, or by name when that is unambiguous.
func (n *Node) findApp(ctx context.Context, ref string) (*appstore.Manifest, string, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, "", fmt.Errorf("%w: name an app (see the installed apps in `erg status`)", webui.ErrInvalid)
	}
	rows, err := n.db.QueryContext(ctx, `SELECT manifest, tree FROM apps WHERE id = ? OR lower(name) = lower(?)`, ref, ref)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var found []*appstore.Manifest
	var trees []string
	for rows.Next() {
		var data, tree string
		if err := rows.Scan(&data, &tree); err != nil {
			return nil, "", err
		}
		var m appstore.Manifest
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return nil, "", err
		}
		if m.ID == ref {
			return &m, tree, nil
		}
		found = append(found, &m)
		trees = append(trees, tree)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	switch len(found) {
	case 0:
		return nil, "", fmt.Errorf("%w: no app %q is installed", webui.ErrNotFound, ref)
	case 1:
		return found[0], trees[0], nil
	}
	return nil, "", fmt.Errorf("%w: %d apps are named %q: use the app id", webui.ErrInvalid, len(found), ref)
}

var grainIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newGrainID() string {
	b := make([]byte, 15) // 120 bits: unguessable, and 24 characters in a host name
	rand.Read(b)
	return grainIDEncoding.EncodeToString(b)
}

// NewGrain implements webui.Backend.
func (n *Node) NewGrain(ctx context.Context, appRef, title string) (webui.Grain, error) {
	m, tree, err := n.findApp(ctx, appRef)
	if err != nil {
		return webui.Grain{}, err
	}
	title = strings.TrimSpace(title)
	if title == "" {
		title = "Untitled " + m.Name
	}
	if len(title) > 200 {
		return webui.Grain{}, fmt.Errorf("%w: title is longer than 200 characters", webui.ErrInvalid)
	}
	id := newGrainID()
	dir := n.grainDir(id)
	varDir := filepath.Join(dir, "var")
	if err := os.MkdirAll(varDir, 0o700); err != nil {
		return webui.Grain{}, fmt.Errorf("create grain storage: %w", err)
	}
	now := time.Now()
	_, err = n.db.ExecContext(ctx, `INSERT INTO grains (id, app_id, title, created_at, last_used) VALUES (?, ?, ?, ?, ?)`,
		id, m.ID, title, now.Unix(), now.Unix())
	if err != nil {
		os.RemoveAll(dir)
		return webui.Grain{}, fmt.Errorf("record grain: %w", err)
	}
	g := &grainInfo{id: id, appID: m.ID, title: title, created: time.Unix(now.Unix(), 0), lastUsed: time.Unix(now.Unix(), 0), app: m, tree: tree}
	n.mu.Lock()
	n.cache[id] = g
	n.mu.Unlock()
	n.log.Info("grain created", "grain", id, "app", m.ID)
	return n.withLoginURL(ctx, g)
}

// OpenGrain implements webui.Backend.
func (n *Node) OpenGrain(ctx context.Context, id string) (webui.Grain, error) {
	g, err := n.grain(id)
	if err != nil {
		return webui.Grain{}, err
	}
	return n.withLoginURL(ctx, g)
}

func (n *Node) withLoginURL(ctx context.Context, g *grainInfo) (webui.Grain, error) {
	token := randomToken()
	_, err := n.db.ExecContext(ctx, `INSERT INTO login_tokens (hash, grain_id, expires_at) VALUES (?, ?, ?)`,
		hashToken(token), g.id, time.Now().Add(loginTokenTTL).Unix())
	if err != nil {
		return webui.Grain{}, fmt.Errorf("create login token: %w", err)
	}
	out := n.toAPI(g)
	_, port, _ := net.SplitHostPort(n.webLn.Addr().String())
	out.URL = webui.GrainOrigin(n.cfg.Domain, g.id, port) + "/_erg/login?token=" + url.QueryEscape(token)
	return out, nil
}

// RemoveGrain implements webui.Backend.
func (n *Node) RemoveGrain(ctx context.Context, id string) error {
	if _, err := n.grain(id); err != nil {
		return err
	}
	if err := n.grains.stop(ctx, id, "removed"); err != nil {
		return fmt.Errorf("stop grain %s: %w", id, err)
	}
	if _, err := n.db.ExecContext(ctx, `DELETE FROM grains WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove grain %s: %w", id, err)
	}
	n.mu.Lock()
	delete(n.cache, id)
	for h, s := range n.sessions {
		if s.grainID == id {
			delete(n.sessions, h)
		}
	}
	n.mu.Unlock()
	n.grains.forget(id)
	dir := n.grainDir(id)
	if err := appstore.RemoveTree(dir); err != nil {
		n.log.Warn("grain storage left behind", "grain", id, "dir", dir, "err", err)
	}
	n.log.Info("grain removed", "grain", id)
	return nil
}

// GrainLog implements webui.Backend.
func (n *Node) GrainLog(ctx context.Context, id string) ([]byte, error) {
	if _, err := n.grain(id); err != nil {
		return nil, err
	}
	return n.grains.logOf(id), nil
}

// GrainExists implements webui.Backend.
func (n *Node) GrainExists(ctx context.Context, id string) (bool, error) {
	_, err := n.grain(id)
	return err == nil, nil
}

// RedeemLoginToken implements webui.Backend.
func (n *Node) RedeemLoginToken(ctx context.Context, grainID, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token", webui.ErrInvalid)
	}
	now := time.Now()
	// Deleting is the redeeming: of two requests racing with one token,
	// exactly one deletes the row.
	res, err := n.db.ExecContext(ctx, `DELETE FROM login_tokens WHERE hash = ? AND grain_id = ? AND expires_at > ?`,
		hashToken(token), grainID, now.Unix())
	if err != nil {
		return "", err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return "", fmt.Errorf("%w: login token is unknown, used or expired", webui.ErrForbidden)
	}
	session := randomToken()
	_, err = n.db.ExecContext(ctx, `INSERT INTO grain_sessions (hash, grain_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		hashToken(session), grainID, now.Unix(), now.Add(sessionTTL).Unix())
	if err != nil {
		return "", err
	}
	n.db.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_at <= ?`, now.Unix())
	return session, nil
}

// GrainViewer implements webui.Backend.
func (n *Node) GrainViewer(ctx context.Context, grainID, session string) (webui.Viewer, error) {
	g, err := n.grain(grainID)
	if err != nil {
		return webui.Viewer{}, err
	}
	se, err := n.checkSession(ctx, hashToken(session), grainID)
	if err != nil {
		return webui.Viewer{}, err
	}
	role, _ := g.app.Role(g.app.OwnerRole)
	return webui.Viewer{
		UserID:      se.userID,
		Username:    n.cfg.Owner,
		Permissions: role.Permissions,
		SessionID:   se.sessionID,
	}, nil
}

// checkSession finds a live session, from memory when it can: the proxy
// asks on every request, and a database read there would cost more than
// the rest of the proxy.
func (n *Node) checkSession(ctx context.Context, hash, grainID string) (sessionEntry, error) {
	now := time.Now()
	n.mu.RLock()
	s, ok := n.sessions[hash]
	n.mu.RUnlock()
	if !ok {
		var expires int64
		err := n.db.QueryRowContext(ctx, `SELECT expires_at FROM grain_sessions WHERE hash = ? AND grain_id = ?`, hash, grainID).Scan(&expires)
		if errors.Is(err, sql.ErrNoRows) {
			return sessionEntry{}, fmt.Errorf("%w: no such session", webui.ErrForbidden)
		}
		if err != nil {
			return sessionEntry{}, err
		}
		s = sessionEntry{
			grainID:   grainID,
			expires:   time.Unix(expires, 0),
			userID:    n.derive("user-id", "owner", grainID),
			sessionID: n.derive("session-id", hash),
		}
		n.mu.Lock()
		n.sessions[hash] = s
		n.mu.Unlock()
	}
	if s.grainID != grainID || !now.Before(s.expires) {
		return sessionEntry{}, fmt.Errorf("%w: no such session", webui.ErrForbidden)
	}
	return s, nil
}

// AcquireGrain implements webui.Backend.
func (n *Node) AcquireGrain(ctx context.Context, grainID string) (http.RoundTripper, func(), error) {
	if _, err := n.grain(grainID); err != nil {
		return nil, nil, err
	}
	return n.grains.acquire(ctx, grainID)
}

// derive makes a stable identifier from the node's key and parts, so
// grains get ids that are stable for them but mean nothing elsewhere.
func (n *Node) derive(parts ...string) string {
	mac := hmac.New(sha256.New, n.key.Seed())
	for _, p := range parts {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}
