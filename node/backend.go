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
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"erg"
	"erg/apppkg"
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
	ownerID  string
	title    string
	created  time.Time
	lastUsed time.Time
	app      *apppkg.Manifest
	tree     string
}

// sessionEntry is a grain session known to be in the database.
type sessionEntry struct {
	grainID   string
	expires   time.Time
	accountID string // "" for an anonymous visitor
	username  string
	shareID   string // "" when the grain's owner opened it
	role      string
	userID    string // what the grain is told, derived once
	sessionID string
	ctx       context.Context // cancelled when the session is dropped
	cancel    context.CancelFunc
}

var _ webui.Backend = (*Node)(nil)

func (n *Node) loadGrains(ctx context.Context) error {
	rows, err := n.db.QueryContext(ctx, `SELECT g.id, g.app_id, g.owner_id, g.title, g.created_at, g.last_used, a.manifest, a.tree
		FROM grains g JOIN apps a ON a.id = g.app_id`)
	if err != nil {
		return fmt.Errorf("load grains: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g grainInfo
		var created, used int64
		var manifest string
		if err := rows.Scan(&g.id, &g.appID, &g.ownerID, &g.title, &created, &used, &manifest, &g.tree); err != nil {
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
		return nil, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, nil
}

// ownGrain returns a grain only to its owner. Anyone else is told it does
// not exist, so ids cannot be probed.
func (n *Node) ownGrain(who erg.User, id string) (*grainInfo, error) {
	g, err := n.grain(id)
	if err != nil {
		return nil, err
	}
	n.mu.RLock()
	owner := g.ownerID
	n.mu.RUnlock()
	if owner != who.ID {
		return nil, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, nil
}

// access finds how a user may use a grain: as its owner, or through the
// share they hold that grants the most.
func (n *Node) access(ctx context.Context, who erg.User, id string) (g *grainInfo, role, shareID string, err error) {
	g, err = n.grain(id)
	if err != nil {
		return nil, "", "", err
	}
	n.mu.RLock()
	owner, m := g.ownerID, g.app
	n.mu.RUnlock()
	if owner == who.ID {
		return g, m.OwnerRole, "", nil
	}
	rows, err := n.db.QueryContext(ctx, `SELECT s.id, s.role FROM share_holders h JOIN shares s ON s.id = h.share_id
		WHERE h.user_id = ? AND h.grain_id = ? AND (s.expires_at = 0 OR s.expires_at > ?)`, who.ID, id, time.Now().Unix())
	if err != nil {
		return nil, "", "", err
	}
	defer rows.Close()
	best := -1
	for rows.Next() {
		var sid, r string
		if err := rows.Scan(&sid, &r); err != nil {
			return nil, "", "", err
		}
		rl, _ := m.Role(r)
		if len(rl.Permissions) > best {
			best, role, shareID = len(rl.Permissions), r, sid
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", "", err
	}
	if best < 0 {
		return nil, "", "", fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, role, shareID, nil
}

func (n *Node) grainDir(id string) string { return filepath.Join(n.cfg.DataDir, grainsDir, id) }

// runSpec tells the grain manager how to start a grain right now.
func (n *Node) runSpec(id string) (runSpec, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	g := n.cache[id]
	if g == nil {
		return runSpec{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
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
func (n *Node) Status(ctx context.Context) (erg.Status, error) {
	var apps int
	if err := n.db.QueryRowContext(ctx, `SELECT count(*) FROM apps`).Scan(&apps); err != nil {
		return erg.Status{}, err
	}
	n.mu.RLock()
	grains := len(n.cache)
	n.mu.RUnlock()
	st := erg.Status{
		Version:   n.cfg.Version,
		DataDir:   n.cfg.DataDir,
		URL:       n.URL(),
		Sandbox:   n.runner.Mode(),
		Cgroups:   n.runner.Cgroups(),
		NodeID:    n.NodeID(),
		Apps:      apps,
		Grains:    grains,
		Running:   n.grains.runningCount(),
		Uptime:    erg.Duration(time.Since(n.started).Round(time.Second)),
		GrainIdle: erg.Duration(n.cfg.GrainIdle),
	}
	n.p2pStatus(&st)
	if n.friends != nil {
		st.Name = n.friends.Name()
	}
	return st, nil
}

// Apps implements webui.Backend.
func (n *Node) Apps(ctx context.Context) ([]erg.App, error) {
	rows, err := n.db.QueryContext(ctx, `SELECT manifest, (SELECT count(*) FROM grains g WHERE g.app_id = apps.id) FROM apps ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	apps := []erg.App{}
	for rows.Next() {
		var data string
		var grains int
		if err := rows.Scan(&data, &grains); err != nil {
			return nil, err
		}
		var m apppkg.Manifest
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return nil, err
		}
		a := appInfo(&m)
		a.Grains = grains
		apps = append(apps, a)
	}
	return apps, rows.Err()
}

func appInfo(m *apppkg.Manifest) erg.App {
	a := erg.App{ID: m.ID, Name: m.Name, Version: m.Version, DisplayVersion: m.DisplayVersion, Description: m.Description,
		OwnerRole: m.OwnerRole, HasIcon: m.Icon != ""}
	for _, act := range m.Actions {
		a.Actions = append(a.Actions, act.Title)
	}
	for _, r := range m.Roles {
		a.Roles = append(a.Roles, erg.Role{Name: r.Name, Title: r.Title, Permissions: r.Permissions})
	}
	return a
}

// maxIconSize bounds an app icon the pages show.
const maxIconSize = 256 << 10

var iconTypes = map[string]string{
	".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".webp": "image/webp", ".gif": "image/gif",
}

// AppIcon implements webui.Backend.
func (n *Node) AppIcon(ctx context.Context, id string) ([]byte, string, error) {
	m, tree, err := n.appByID(ctx, id)
	if err != nil {
		return nil, "", err
	}
	ctype := iconTypes[strings.ToLower(filepath.Ext(m.Icon))]
	if m.Icon == "" || ctype == "" {
		return nil, "", fmt.Errorf("%w: app %s has no icon", erg.ErrNotFound, id)
	}
	// The tree is the app's: read inside it only.
	root, err := os.OpenRoot(tree)
	if err != nil {
		return nil, "", err
	}
	defer root.Close()
	f, err := root.Open(m.Icon)
	if err != nil {
		return nil, "", fmt.Errorf("%w: icon: %v", erg.ErrNotFound, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIconSize+1))
	if err != nil || len(data) > maxIconSize {
		return nil, "", fmt.Errorf("%w: icon unreadable or larger than %d KiB", erg.ErrNotFound, maxIconSize>>10)
	}
	return data, ctype, nil
}

func (n *Node) appByID(ctx context.Context, id string) (*apppkg.Manifest, string, error) {
	var data, tree string
	err := n.db.QueryRowContext(ctx, `SELECT manifest, tree FROM apps WHERE id = ?`, id).Scan(&data, &tree)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("%w: no app %q is installed", erg.ErrNotFound, id)
	}
	if err != nil {
		return nil, "", err
	}
	var m apppkg.Manifest
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		return nil, "", err
	}
	return &m, tree, nil
}

// RemoveApp implements webui.Backend.
func (n *Node) RemoveApp(ctx context.Context, who erg.User, id string) error {
	if err := requireOwner(who); err != nil {
		return err
	}
	n.installMu.Lock()
	defer n.installMu.Unlock()
	m, tree, err := n.appByID(ctx, id)
	if err != nil {
		return err
	}
	var grains int
	n.db.QueryRowContext(ctx, `SELECT count(*) FROM grains WHERE app_id = ?`, id).Scan(&grains)
	if grains > 0 {
		return fmt.Errorf("%w: %d grains of %s exist: delete them first", erg.ErrInvalid, grains, m.Name)
	}
	if _, err := n.db.ExecContext(ctx, `DELETE FROM apps WHERE id = ? AND NOT EXISTS (SELECT 1 FROM grains WHERE app_id = ?)`, id, id); err != nil {
		return fmt.Errorf("remove app: %w", err)
	}
	var others int
	n.db.QueryRowContext(ctx, `SELECT count(*) FROM apps WHERE tree = ?`, tree).Scan(&others)
	if others == 0 && filepath.Dir(tree) == filepath.Join(n.cfg.DataDir, packagesDir) {
		if err := apppkg.RemoveTree(tree); err != nil {
			n.log.Warn("package tree left behind", "app", id, "dir", tree, "err", err)
		}
	}
	n.log.Info("app removed", "app", id, "name", m.Name)
	return nil
}

// usernames maps account ids to usernames.
func (n *Node) usernames(ctx context.Context) (map[string]string, error) {
	rows, err := n.db.QueryContext(ctx, `SELECT id, username FROM users`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, rows.Err()
}

func (n *Node) toAPI(g *grainInfo, who erg.User, role string, names map[string]string) erg.Grain {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if role == "" && g.ownerID == who.ID {
		role = g.app.OwnerRole
	}
	return erg.Grain{
		ID: g.id, AppID: g.appID, AppName: g.app.Name, Title: g.title, Owner: names[g.ownerID],
		Mine: g.ownerID == who.ID, Role: role,
		Created: g.created, LastUsed: g.lastUsed, Running: n.grains.running(g.id),
	}
}

// Grains implements webui.Backend.
func (n *Node) Grains(ctx context.Context, who erg.User) ([]erg.Grain, error) {
	names, err := n.usernames(ctx)
	if err != nil {
		return nil, err
	}
	var mine []*grainInfo
	n.mu.RLock()
	for _, g := range n.cache {
		if g.ownerID == who.ID {
			mine = append(mine, g)
		}
	}
	n.mu.RUnlock()
	out := make([]erg.Grain, 0, len(mine))
	for _, g := range mine {
		out = append(out, n.toAPI(g, who, "", names))
	}
	rows, err := n.db.QueryContext(ctx, `SELECT DISTINCT grain_id FROM share_holders WHERE user_id = ?`, who.ID)
	if err != nil {
		return nil, err
	}
	var shared []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		shared = append(shared, id)
	}
	rows.Close()
	for _, id := range shared {
		g, role, _, err := n.access(ctx, who, id)
		if errors.Is(err, erg.ErrNotFound) {
			continue // every share they held has expired
		}
		if err != nil {
			return nil, err
		}
		if g.ownerID != who.ID {
			out = append(out, n.toAPI(g, who, role, names))
		}
	}
	out = append(out, n.remoteGrains(ctx, who)...)
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Grain implements webui.Backend.
func (n *Node) Grain(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	h, err := n.resolve(id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.describe(ctx, who)
}

// findApp resolves an app by id, or by name when that is unambiguous.
func (n *Node) findApp(ctx context.Context, ref string) (*apppkg.Manifest, string, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, "", fmt.Errorf("%w: name an app (see the installed apps in `erg status`)", erg.ErrInvalid)
	}
	rows, err := n.db.QueryContext(ctx, `SELECT manifest, tree FROM apps WHERE id = ? OR lower(name) = lower(?)`, ref, ref)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var found []*apppkg.Manifest
	var trees []string
	for rows.Next() {
		var data, tree string
		if err := rows.Scan(&data, &tree); err != nil {
			return nil, "", err
		}
		var m apppkg.Manifest
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
		return nil, "", fmt.Errorf("%w: no app %q is installed", erg.ErrNotFound, ref)
	case 1:
		return found[0], trees[0], nil
	}
	return nil, "", fmt.Errorf("%w: %d apps are named %q: use the app id", erg.ErrInvalid, len(found), ref)
}

var grainIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newGrainID() string {
	b := make([]byte, 15) // 120 bits: unguessable, and 24 characters in a host name
	rand.Read(b)
	return grainIDEncoding.EncodeToString(b)
}

func checkTitle(title, fallback string) (string, error) {
	title = strings.TrimSpace(title)
	if title == "" {
		title = fallback
	}
	if len(title) > 200 {
		return "", fmt.Errorf("%w: title is longer than 200 characters", erg.ErrInvalid)
	}
	if strings.ContainsFunc(title, func(r rune) bool { return r < ' ' }) {
		return "", fmt.Errorf("%w: title has control characters", erg.ErrInvalid)
	}
	return title, nil
}

// NewGrain implements webui.Backend.
func (n *Node) NewGrain(ctx context.Context, who erg.User, appRef, title string) (erg.Grain, error) {
	g, err := n.createGrain(ctx, who, appRef, title, nil)
	if err != nil {
		return erg.Grain{}, err
	}
	return n.withLoginURL(ctx, g, who.ID, "", g.app.OwnerRole)
}

// createGrain makes a grain's row and storage; fill, if set, puts the
// initial contents into its empty var dir. A failure leaves nothing.
func (n *Node) createGrain(ctx context.Context, who erg.User, appRef, title string, fill func(varDir string, m *apppkg.Manifest) error) (*grainInfo, error) {
	m, tree, err := n.findApp(ctx, appRef)
	if err != nil {
		return nil, err
	}
	if title, err = checkTitle(title, "Untitled "+m.Name); err != nil {
		return nil, err
	}
	id := newGrainID()
	dir := n.grainDir(id)
	varDir := filepath.Join(dir, "var")
	if err := os.MkdirAll(varDir, 0o700); err != nil {
		return nil, fmt.Errorf("create grain storage: %w", err)
	}
	if fill != nil {
		if err := fill(varDir, m); err != nil {
			apppkg.RemoveTree(dir)
			return nil, err
		}
	}
	now := time.Now()
	_, err = n.db.ExecContext(ctx, `INSERT INTO grains (id, app_id, owner_id, title, created_at, last_used) VALUES (?, ?, ?, ?, ?, ?)`,
		id, m.ID, who.ID, title, now.Unix(), now.Unix())
	if err != nil {
		apppkg.RemoveTree(dir)
		return nil, fmt.Errorf("record grain: %w", err)
	}
	g := &grainInfo{id: id, appID: m.ID, ownerID: who.ID, title: title, created: time.Unix(now.Unix(), 0), lastUsed: time.Unix(now.Unix(), 0), app: m, tree: tree}
	n.mu.Lock()
	n.cache[id] = g
	n.mu.Unlock()
	n.log.Info("grain created", "grain", id, "app", m.ID, "owner", who.Username)
	return g, nil
}

// OpenGrain implements webui.Backend.
func (n *Node) OpenGrain(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	h, err := n.resolve(id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.open(ctx, who)
}

// withLoginURL adds a one-time login link for the grain's origin, for an
// account (or "" for an anonymous visitor) through a share (or "" for the
// owner).
func (n *Node) withLoginURL(ctx context.Context, g *grainInfo, accountID, shareID, role string) (erg.Grain, error) {
	token, err := n.newLoginToken(ctx, "grain_id", g.id, accountID, shareID)
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := n.usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	out := n.toAPI(g, erg.User{ID: accountID}, role, names)
	out.URL = n.grainOrigin(g.id) + "/_erg/login?token=" + url.QueryEscape(token)
	return out, nil
}

func (n *Node) grainOrigin(id string) string {
	_, port, _ := net.SplitHostPort(n.webLn.Addr().String())
	return webui.GrainOrigin(n.cfg.Domain, id, port)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// RenameGrain implements webui.Backend.
func (n *Node) RenameGrain(ctx context.Context, who erg.User, id, title string) (erg.Grain, error) {
	g, err := n.ownGrain(who, id)
	if err != nil {
		return erg.Grain{}, err
	}
	if title, err = checkTitle(title, ""); err != nil {
		return erg.Grain{}, err
	}
	if title == "" {
		return erg.Grain{}, fmt.Errorf("%w: the title is empty", erg.ErrInvalid)
	}
	if _, err := n.db.ExecContext(ctx, `UPDATE grains SET title = ? WHERE id = ?`, title, id); err != nil {
		return erg.Grain{}, fmt.Errorf("rename grain: %w", err)
	}
	n.mu.Lock()
	g.title = title
	n.mu.Unlock()
	return n.Grain(ctx, who, id)
}

// RemoveGrain implements webui.Backend. The node's owner may remove
// anyone's grain (to clean up after a user); anyone else only their own,
// and is told others' do not exist.
func (n *Node) RemoveGrain(ctx context.Context, who erg.User, id string) error {
	find := n.ownGrain
	if who.Owner {
		find = func(_ erg.User, id string) (*grainInfo, error) { return n.grain(id) }
	}
	g, err := find(who, id)
	if err != nil {
		return err
	}
	n.mu.RLock()
	theirs := g.ownerID != who.ID
	n.mu.RUnlock()
	if theirs {
		n.log.Info("the owner removes a user's grain", "grain", id, "by", who.Username)
	}
	return n.removeGrain(ctx, id)
}

// AllGrains implements webui.Backend.
func (n *Node) AllGrains(ctx context.Context, who erg.User) ([]erg.NodeGrain, error) {
	if err := requireOwner(who); err != nil {
		return nil, err
	}
	names, err := n.usernames(ctx)
	if err != nil {
		return nil, err
	}
	n.mu.RLock()
	all := make([]*grainInfo, 0, len(n.cache))
	for _, g := range n.cache {
		all = append(all, g)
	}
	n.mu.RUnlock()
	out := make([]erg.NodeGrain, 0, len(all))
	for _, g := range all {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, erg.NodeGrain{
			Grain: n.toAPI(g, who, "", names),
			Size:  dirSize(filepath.Join(n.grainDir(g.id), "var")),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Owner != out[j].Owner {
			return out[i].Owner < out[j].Owner
		}
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// dirSize sums the sizes of the files under dir, not following symlinks
// (a grain's link counts as the link, not what it points at). What cannot
// be read is skipped: the figure is for the owner to spot big grains.
func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0 {
			if info, err := d.Info(); err == nil { // Lstat: WalkDir does not follow links
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

func (n *Node) removeGrain(ctx context.Context, id string) error {
	if err := n.grains.stop(ctx, id, "removed"); err != nil {
		return fmt.Errorf("stop grain %s: %w", id, err)
	}
	if _, err := n.db.ExecContext(ctx, `DELETE FROM grains WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove grain %s: %w", id, err)
	}
	n.mu.Lock()
	delete(n.cache, id)
	n.mu.Unlock()
	n.dropSessions(func(s sessionEntry) bool { return s.grainID == id })
	n.grains.forget(id)
	dir := n.grainDir(id)
	if err := apppkg.RemoveTree(dir); err != nil {
		n.log.Warn("grain storage left behind", "grain", id, "dir", dir, "err", err)
	}
	n.log.Info("grain removed", "grain", id)
	return nil
}

// GrainLog implements webui.Backend.
func (n *Node) GrainLog(ctx context.Context, who erg.User, id string) ([]byte, error) {
	if _, err := n.ownGrain(who, id); err != nil {
		return nil, err
	}
	return n.grains.logOf(id), nil
}

// grainHandle is a grain this node serves on a grain origin, one of its
// own (localHandle) or one a friend's node shared (remoteHandle): the
// proxy's view of it, and the node's API's.
type grainHandle interface {
	webui.GrainHandle
	// describe returns the grain as who sees it, if who may use it.
	describe(ctx context.Context, who erg.User) (erg.Grain, error)
	// open is describe with a one-time login URL for the grain's origin.
	open(ctx context.Context, who erg.User) (erg.Grain, error)
}

var (
	_ grainHandle = localHandle{}
	_ grainHandle = remoteHandle{}
)

// resolve finds a grain served on this node's grain origins. Grain ids
// are random, so a local grain and a friend's never share one: the local
// cache is asked first, so its requests take no federation lock.
func (n *Node) resolve(id string) (grainHandle, error) {
	g, err := n.grain(id)
	if err == nil {
		return localHandle{n, g}, nil
	}
	if rg := n.remoteGrain(id); rg != nil {
		return remoteHandle{n, rg}, nil
	}
	return nil, err
}

// ResolveGrain implements webui.Backend.
func (n *Node) ResolveGrain(ctx context.Context, id string) (webui.GrainHandle, error) {
	h, err := n.resolve(id)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// localHandle is a grain of this node's own, on its grain origin.
type localHandle struct {
	n *Node
	g *grainInfo
}

func (h localHandle) describe(ctx context.Context, who erg.User) (erg.Grain, error) {
	g, role, _, err := h.n.access(ctx, who, h.g.id)
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := h.n.usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.n.toAPI(g, who, role, names), nil
}

func (h localHandle) open(ctx context.Context, who erg.User) (erg.Grain, error) {
	g, role, shareID, err := h.n.access(ctx, who, h.g.id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.n.withLoginURL(ctx, g, who.ID, shareID, role)
}

// Redeem implements webui.GrainHandle.
func (h localHandle) Redeem(ctx context.Context, token string) (string, error) {
	return h.n.redeem(ctx, "grain_id", h.g.id, token)
}

// redeem spends a one-time login token for a grain, this node's own
// (col "grain_id") or a friend's ("remote_grain_id"), for a session.
func (n *Node) redeem(ctx context.Context, col, grainID, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token", erg.ErrInvalid)
	}
	now := time.Now()
	// Deleting is the redeeming: of two requests racing with one token,
	// exactly one deletes the row.
	var accountID, shareID sql.NullString
	err := n.db.QueryRowContext(ctx, `DELETE FROM login_tokens WHERE hash = ? AND `+col+` = ? AND expires_at > ? RETURNING user_id, share_id`,
		hashToken(token), grainID, now.Unix()).Scan(&accountID, &shareID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: login token is unknown, used or expired", erg.ErrForbidden)
	}
	if err != nil {
		return "", err
	}
	session := randomToken()
	_, err = n.db.ExecContext(ctx, `INSERT INTO grain_sessions (hash, `+col+`, created_at, expires_at, user_id, share_id) VALUES (?, ?, ?, ?, ?, ?)`,
		hashToken(session), grainID, now.Unix(), now.Add(sessionTTL).Unix(), accountID, shareID)
	if err != nil {
		return "", err
	}
	n.forgetExpired(ctx, now)
	return session, nil
}

// newLoginToken records a one-time login token for a grain, this node's
// own (col "grain_id") or a friend's ("remote_grain_id").
func (n *Node) newLoginToken(ctx context.Context, col, grainID, accountID, shareID string) (string, error) {
	token := randomToken()
	_, err := n.db.ExecContext(ctx, `INSERT INTO login_tokens (hash, `+col+`, expires_at, user_id, share_id) VALUES (?, ?, ?, ?, ?)`,
		hashToken(token), grainID, time.Now().Add(loginTokenTTL).Unix(), nullable(accountID), nullable(shareID))
	if err != nil {
		return "", fmt.Errorf("create login token: %w", err)
	}
	return token, nil
}

// forgetExpired deletes expired login tokens and sessions, at most once a
// minute: every opened grain adds a session, and nothing else removes them.
func (n *Node) forgetExpired(ctx context.Context, now time.Time) {
	n.mu.Lock()
	if now.Sub(n.web.lastSweep) < time.Minute {
		n.mu.Unlock()
		return
	}
	n.web.lastSweep = now
	for h, s := range n.sessions {
		if !now.Before(s.expires) {
			delete(n.sessions, h) // no request can use it any more
		}
	}
	n.mu.Unlock()
	n.db.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_at <= ?`, now.Unix())
	n.db.ExecContext(ctx, `DELETE FROM grain_sessions WHERE expires_at <= ?`, now.Unix())
}

// Viewer implements webui.GrainHandle.
func (h localHandle) Viewer(ctx context.Context, session string) (erg.Viewer, error) {
	n, g := h.n, h.g
	se, err := n.checkSession(ctx, hashToken(session), g.id, func(ctx context.Context, hash string) (sessionEntry, error) {
		return n.loadSession(ctx, hash, g)
	})
	if err != nil {
		return erg.Viewer{}, err
	}
	n.mu.RLock()
	role, _ := g.app.Role(se.role)
	n.mu.RUnlock()
	return erg.Viewer{
		UserID:      se.userID,
		Username:    se.username,
		Permissions: role.Permissions,
		SessionID:   se.sessionID,
		Session:     se.ctx,
		Expires:     se.expires,
		Account:     se.accountID,
	}, nil
}

// checkSession finds a live session, from memory when it can: the proxy
// asks on every request, and a database read there would cost more than
// the rest of the proxy. load reads it from the database; local and
// friends' grains share the cache and its revocation generation.
func (n *Node) checkSession(ctx context.Context, hash, grainID string, load func(ctx context.Context, hash string) (sessionEntry, error)) (sessionEntry, error) {
	now := time.Now()
	for {
		n.mu.RLock()
		s, ok := n.sessions[hash]
		gen := n.web.revokeGen
		n.mu.RUnlock()
		if ok {
			if s.grainID != grainID || !now.Before(s.expires) {
				return sessionEntry{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
			}
			return s, nil
		}
		s, err := load(ctx, hash)
		if err != nil {
			return sessionEntry{}, err
		}
		n.mu.Lock()
		if n.web.revokeGen != gen {
			// Access was taken away meanwhile: look again.
			n.mu.Unlock()
			continue
		}
		if _, ok := n.sessions[hash]; !ok {
			n.sessions[hash] = s
		}
		n.mu.Unlock()
		// The next turn returns the cached entry, this one or a racer's.
	}
}

func (n *Node) loadSession(ctx context.Context, hash string, g *grainInfo) (sessionEntry, error) {
	var expires, shareExpires int64
	var accountID, shareID, role, username sql.NullString
	err := n.db.QueryRowContext(ctx, `SELECT gs.expires_at, gs.user_id, gs.share_id, s.role, coalesce(s.expires_at, 0), u.username
		FROM grain_sessions gs LEFT JOIN shares s ON s.id = gs.share_id LEFT JOIN users u ON u.id = gs.user_id
		WHERE gs.hash = ? AND gs.grain_id = ?`, hash, g.id).Scan(&expires, &accountID, &shareID, &role, &shareExpires, &username)
	if errors.Is(err, sql.ErrNoRows) {
		return sessionEntry{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
	}
	if err != nil {
		return sessionEntry{}, err
	}
	s := sessionEntry{
		grainID:   g.id,
		expires:   time.Unix(expires, 0),
		accountID: accountID.String,
		username:  username.String,
		shareID:   shareID.String,
		role:      role.String,
		sessionID: n.derive("session-id", hash),
	}
	if shareExpires > 0 && shareExpires < expires {
		s.expires = time.Unix(shareExpires, 0)
	}
	n.mu.RLock()
	owner, ownerRole := g.ownerID, g.app.OwnerRole
	n.mu.RUnlock()
	if s.shareID == "" {
		// Without a share only the grain's owner has a session.
		if s.accountID != owner {
			return sessionEntry{}, fmt.Errorf("%w: no such session", erg.ErrForbidden)
		}
		s.role = ownerRole
	}
	if s.accountID != "" {
		s.userID = n.derive("user-id", s.accountID, g.id)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// dropSessions ends every grain session that match selects: it is
// forgotten, so the next request on it is refused, and its context is
// cancelled, so open requests and websockets on it are cut.
func (n *Node) dropSessions(match func(sessionEntry) bool) {
	n.mu.Lock()
	n.web.revokeGen++
	var done []context.CancelFunc
	for h, s := range n.sessions {
		if match(s) {
			delete(n.sessions, h)
			done = append(done, s.cancel)
		}
	}
	n.mu.Unlock()
	for _, cancel := range done {
		cancel()
	}
}

// Acquire implements webui.GrainHandle.
func (h localHandle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return h.n.grains.acquire(ctx, h.g.id)
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
