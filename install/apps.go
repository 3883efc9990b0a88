package install

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"erg"
	"erg/apppkg"
)

// Describe is an installed app as the API shows it.
func Describe(m *apppkg.Manifest) erg.App {
	a := erg.App{ID: m.ID, Name: m.Name, Version: m.Version, DisplayVersion: m.DisplayVersion, Description: m.Description,
		OwnerRole: m.OwnerRole, HasIcon: m.Icon != "", APIPath: m.APIPath, Offers: m.Offers}
	for _, act := range m.Actions {
		a.Actions = append(a.Actions, act.Title)
	}
	for _, r := range m.Roles {
		a.Roles = append(a.Roles, erg.Role{Name: r.Name, Title: r.Title, Permissions: r.Permissions})
	}
	return a
}

// Apps lists the installed apps, each with how many grains of it exist.
func (in *Installer) Apps(ctx context.Context) ([]erg.App, error) {
	rows, err := in.cfg.DB.QueryContext(ctx, `SELECT manifest, (SELECT count(*) FROM grains g WHERE g.app_id = apps.id) FROM apps ORDER BY name`)
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
		a := Describe(&m)
		a.Grains = grains
		apps = append(apps, a)
	}
	return apps, rows.Err()
}

// Version is the installed version of an app, 0 if it is not installed.
func (in *Installer) Version(ctx context.Context, appID string) (int64, error) {
	var v int64
	err := in.cfg.DB.QueryRowContext(ctx, `SELECT version FROM apps WHERE id = ?`, appID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// AppVersion is an installed app's id and version.
type AppVersion struct {
	ID      string
	Version int64
}

// Versions lists every installed app's version, by name.
func (in *Installer) Versions(ctx context.Context) ([]AppVersion, error) {
	rows, err := in.cfg.DB.QueryContext(ctx, `SELECT id, version FROM apps ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AppVersion
	for rows.Next() {
		var v AppVersion
		if err := rows.Scan(&v.ID, &v.Version); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (in *Installer) app(ctx context.Context, id string) (*apppkg.Manifest, string, error) {
	var data, tree string
	err := in.cfg.DB.QueryRowContext(ctx, `SELECT manifest, tree FROM apps WHERE id = ?`, id).Scan(&data, &tree)
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

// maxIconSize bounds an app icon the pages show.
const maxIconSize = 256 << 10

var iconTypes = map[string]string{
	".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".webp": "image/webp", ".gif": "image/gif",
}

// Icon returns an installed app's icon and its content type.
func (in *Installer) Icon(ctx context.Context, id string) ([]byte, string, error) {
	m, tree, err := in.app(ctx, id)
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

// Remove uninstalls an app no grain uses. Only the owner may.
func (in *Installer) Remove(ctx context.Context, who erg.User, id string) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can do that", erg.ErrForbidden)
	}
	in.cfg.Lock.Lock()
	defer in.cfg.Lock.Unlock()
	m, tree, err := in.app(ctx, id)
	if err != nil {
		return err
	}
	var grains int
	in.cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM grains WHERE app_id = ?`, id).Scan(&grains)
	if grains > 0 {
		return fmt.Errorf("%w: %d grains of %s exist: delete them first", erg.ErrInvalid, grains, m.Name)
	}
	if _, err := in.cfg.DB.ExecContext(ctx, `DELETE FROM apps WHERE id = ? AND NOT EXISTS (SELECT 1 FROM grains WHERE app_id = ?)`, id, id); err != nil {
		return fmt.Errorf("remove app: %w", err)
	}
	var others int
	in.cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM apps WHERE tree = ?`, tree).Scan(&others)
	if others == 0 && filepath.Dir(tree) == in.cfg.Dir {
		if err := apppkg.RemoveTree(tree); err != nil {
			in.cfg.Log.Warn("package tree left behind", "app", id, "dir", tree, "err", err)
		}
	}
	in.cfg.Log.Info("app removed", "app", id, "name", m.Name)
	return nil
}

// Upload installs a signed package read from r (an upload), or upgrades
// its app when it carries a higher version signed by the same key. The
// bytes go to a file in TempDir first, up to the package limit. Running
// grains keep their package until their next start.
func (in *Installer) Upload(ctx context.Context, r io.Reader, progress erg.InstallProgress) (erg.App, error) {
	f, err := in.Receive(r, "upload-*.erg")
	if err != nil {
		return erg.App{}, err
	}
	defer os.Remove(f)
	res, err := in.Install(ctx, File(f), Options{Progress: progress})
	if err != nil {
		return erg.App{}, err
	}
	return Describe(res.Manifest), nil
}

// Receive copies a package arriving from r (an upload, a publish) into a
// new file in TempDir named after pattern, up to the package limit, and
// returns its path; the caller removes it.
func (in *Installer) Receive(r io.Reader, pattern string) (string, error) {
	max := in.cfg.Limits.WithDefaults().MaxPackage
	if err := os.MkdirAll(in.cfg.TempDir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(in.cfg.TempDir, pattern)
	if err != nil {
		return "", err
	}
	nb, err := io.Copy(f, io.LimitReader(r, max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && nb > max {
		err = fmt.Errorf("%w: package is larger than %d MiB", erg.ErrInvalid, max>>20)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("receive package: %w", err)
	}
	return f.Name(), nil
}

// InstallDir installs what it finds directly below dir: signed package
// files (*.erg), each unless the same or a newer version is installed, and
// app trees (directories with erg.json at their root), the unsigned form
// for development.
func (in *Installer) InstallDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("apps dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var src Source
		switch {
		case !e.IsDir() && filepath.Ext(e.Name()) == ".erg":
			src = File(p)
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(p, apppkg.ManifestFile)); err != nil {
				continue
			}
			src = Tree(p)
		default:
			continue
		}
		res, err := in.Install(ctx, src, Options{SkipOld: true})
		if err != nil {
			return fmt.Errorf("install %s: %w", p, err)
		}
		if res.Installed {
			in.cfg.Log.Info("app installed", "app", res.Manifest.ID, "version", res.Manifest.DisplayVersion, "from", p)
		}
	}
	return nil
}
