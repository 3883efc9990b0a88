package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"erg"
	"erg/apppkg"
	"erg/fedgrains"
	"erg/grains"
	"erg/webui"
)

var _ webui.Backend = (*Node)(nil)

// Status implements webui.Backend.
func (n *Node) Status(ctx context.Context) (erg.Status, error) {
	var apps int
	if err := n.db.QueryRowContext(ctx, `SELECT count(*) FROM apps`).Scan(&apps); err != nil {
		return erg.Status{}, err
	}
	st := erg.Status{
		Version:   n.cfg.Version,
		DataDir:   n.cfg.DataDir,
		URL:       n.URL(),
		Sandbox:   n.runner.Mode(),
		Cgroups:   n.runner.Cgroups(),
		NodeID:    n.NodeID(),
		Apps:      apps,
		Grains:    n.grains.Count(),
		Running:   n.grains.RunningCount(),
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

// Grains implements webui.Backend.
func (n *Node) Grains(ctx context.Context, who erg.User) ([]erg.Grain, error) {
	out, err := n.grains.Local(ctx, who)
	if err != nil {
		return nil, err
	}
	out = append(out, n.sharing.List(ctx, who)...)
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
	return h.Describe(ctx, who)
}

// OpenGrain implements webui.Backend.
func (n *Node) OpenGrain(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	h, err := n.resolve(id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.Open(ctx, who)
}

func (n *Node) grainOrigin(id string) string {
	_, port, _ := net.SplitHostPort(n.webLn.Addr().String())
	return webui.GrainOrigin(n.cfg.Domain, id, port)
}

// NewGrain implements webui.Backend.
func (n *Node) NewGrain(ctx context.Context, who erg.User, appRef, title string) (erg.Grain, error) {
	return n.grains.NewGrain(ctx, who, appRef, title)
}

// RenameGrain implements webui.Backend.
func (n *Node) RenameGrain(ctx context.Context, who erg.User, id, title string) (erg.Grain, error) {
	if err := n.grains.Rename(ctx, who, id, title); err != nil {
		return erg.Grain{}, err
	}
	return n.Grain(ctx, who, id)
}

// RemoveGrain implements webui.Backend.
func (n *Node) RemoveGrain(ctx context.Context, who erg.User, id string) error {
	return n.grains.RemoveGrain(ctx, who, id)
}

// AllGrains implements webui.Backend.
func (n *Node) AllGrains(ctx context.Context, who erg.User) ([]erg.NodeGrain, error) {
	return n.grains.All(ctx, who)
}

// GrainLog implements webui.Backend.
func (n *Node) GrainLog(ctx context.Context, who erg.User, id string) ([]byte, error) {
	return n.grains.Log(ctx, who, id)
}

// BackupGrain implements webui.Backend.
func (n *Node) BackupGrain(ctx context.Context, who erg.User, id string, w io.Writer) error {
	return n.grains.Backup(ctx, who, id, w)
}

// RestoreGrain implements webui.Backend.
func (n *Node) RestoreGrain(ctx context.Context, who erg.User, r io.Reader) (erg.Grain, error) {
	return n.grains.Restore(ctx, who, r)
}

// grainHandle is a grain this node serves on a grain origin, one of its
// own (grains.Handle) or one a friend's node shared (fedgrains.Handle):
// the proxy's view of it, and the node's API's.
type grainHandle interface {
	webui.GrainHandle
	// Describe returns the grain as who sees it, if who may use it.
	Describe(ctx context.Context, who erg.User) (erg.Grain, error)
	// Open is Describe with a one-time login URL for the grain's origin.
	Open(ctx context.Context, who erg.User) (erg.Grain, error)
}

var (
	_ grainHandle = grains.Handle{}
	_ grainHandle = fedgrains.Handle{}
)

// resolve finds a grain served on this node's grain origins. Grain ids
// are random, so a local grain and a friend's never share one: the local
// cache is asked first, so its requests take no federation lock.
func (n *Node) resolve(id string) (grainHandle, error) {
	h, err := n.grains.Handle(id)
	if err == nil {
		return h, nil
	}
	if rh, rerr := n.sharing.Handle(id); rerr == nil {
		return rh, nil
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
