package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"erg"
	"erg/apppkg"
)

// maxPackageSize bounds an uploaded package; appstore applies the same
// default to what the package holds.
const maxPackageSize = 1 << 30

// InstallPackage verifies a signed package read from r and installs it,
// or upgrades its app when it carries a higher version signed by the same
// key. Running grains keep their package until their next start.
func (n *Node) InstallPackage(ctx context.Context, r io.Reader) (erg.App, error) {
	tmpDir := filepath.Join(n.cfg.DataDir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return erg.App{}, err
	}
	f, err := os.CreateTemp(tmpDir, "upload-*.erg")
	if err != nil {
		return erg.App{}, err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, io.LimitReader(r, maxPackageSize+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return erg.App{}, fmt.Errorf("receive package: %w", err)
	}
	if fi, err := os.Stat(f.Name()); err == nil && fi.Size() > maxPackageSize {
		return erg.App{}, fmt.Errorf("%w: package is larger than %d MiB", erg.ErrInvalid, maxPackageSize>>20)
	}
	app, _, err := n.installPackageFile(ctx, f.Name(), false)
	return app, err
}

// installPackageFile installs the package file at path. With skipOld, a
// package no newer than the installed version is skipped (installed is
// false) rather than refused, as starting with --apps needs.
func (n *Node) installPackageFile(ctx context.Context, path string, skipOld bool) (app erg.App, installed bool, err error) {
	progress := erg.InstallProgressFrom(ctx)
	pkg, err := apppkg.OpenFileProgress(ctx, path, apppkg.SizeLimits{MaxPackage: maxPackageSize},
		func(done, total int64) { progress("verifying", done, total) })
	if err != nil {
		return erg.App{}, false, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	defer pkg.Close()

	n.installMu.Lock()
	defer n.installMu.Unlock()
	var version int64
	var tree string
	err = n.db.QueryRowContext(ctx, `SELECT version, tree FROM apps WHERE id = ?`, pkg.AppID).Scan(&version, &tree)
	dest := filepath.Join(n.cfg.DataDir, packagesDir, pkg.CID.String())
	if err == nil && pkg.Version <= version {
		if skipOld {
			if tree != dest {
				n.log.Warn("package skipped: not newer than the installed version; raise \"version\" in its manifest to upgrade",
					"file", path, "app", pkg.AppID, "version", pkg.Version, "installed", version)
			}
			return appInfo(pkg.Manifest), false, nil
		}
		return erg.App{}, false, fmt.Errorf("%w: %s version %d is not newer than the installed version %d",
			erg.ErrInvalid, pkg.Manifest.Name, pkg.Version, version)
	}
	created := false
	if _, err := os.Stat(dest); errors.Is(err, os.ErrNotExist) {
		opts := apppkg.UnpackOptions{Progress: func(done, total int64) { progress("unpacking", done, total) }}
		if err := apppkg.Unpack(ctx, pkg, dest, opts); err != nil {
			return erg.App{}, false, fmt.Errorf("unpack %s: %w", pkg.CID, err)
		}
		created = true
	}
	if err := n.recordApp(ctx, pkg.Manifest, dest); err != nil {
		if created {
			apppkg.RemoveTree(dest)
		}
		return erg.App{}, false, err
	}
	n.log.Info("package installed", "app", pkg.AppID, "name", pkg.Manifest.Name, "version", pkg.Version, "package", pkg.CID)
	if err := n.collectPackagesLocked(ctx); err != nil {
		n.log.Warn("remove unused packages", "err", err)
	}
	return appInfo(pkg.Manifest), true, nil
}

// recordApp records an installed app version and points its grains at the
// new tree for their next start.
func (n *Node) recordApp(ctx context.Context, m *apppkg.Manifest, tree string) error {
	manifest, err := jsonString(m)
	if err != nil {
		return err
	}
	_, err = n.db.ExecContext(ctx, `INSERT INTO apps (id, name, version, display_version, manifest, tree, installed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, version=excluded.version,
			display_version=excluded.display_version, manifest=excluded.manifest, tree=excluded.tree,
			installed_at=excluded.installed_at`,
		m.ID, m.Name, m.Version, m.DisplayVersion, manifest, tree, time.Now().Unix())
	if err != nil {
		return fmt.Errorf("record app: %w", err)
	}
	n.mu.Lock()
	for _, g := range n.cache {
		if g.appID == m.ID {
			g.app = m
			g.tree = tree
		}
	}
	n.mu.Unlock()
	return nil
}
