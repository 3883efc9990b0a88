package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"erg"
	"erg/apppkg"
	"erg/install"
)

// maxPackageSize bounds an uploaded package; apppkg applies the same
// default to what the package holds.
const maxPackageSize = 1 << 30

// newInstaller is the node's one install pipeline, on its packages/ and
// apps table, under installMu.
func (n *Node) newInstaller() *install.Installer {
	return install.New(install.Config{
		DB:       n.db,
		Dir:      filepath.Join(n.cfg.DataDir, packagesDir),
		Lock:     &n.installMu,
		Limits:   apppkg.SizeLimits{MaxPackage: maxPackageSize},
		Log:      n.log,
		Recorded: func(m *apppkg.Manifest, tree string) { n.grains.AppRecorded(m, tree) },
		Collect:  func(ctx context.Context) error { return n.grains.CollectPackagesLocked(ctx) },
	})
}

// InstallPackage verifies a signed package read from r and installs it,
// or upgrades its app when it carries a higher version signed by the same
// key. Running grains keep their package until their next start.
func (n *Node) InstallPackage(ctx context.Context, r io.Reader, progress erg.InstallProgress) (erg.App, error) {
	f, err := n.receiveTemp(r, "upload-*.erg")
	if err != nil {
		return erg.App{}, err
	}
	defer os.Remove(f)
	res, err := n.installer.Install(ctx, install.File(f), install.Options{Progress: progress})
	if err != nil {
		return erg.App{}, err
	}
	return appInfo(res.Manifest), nil
}

// receiveTemp copies an uploaded package into a file in tmp/, up to
// maxPackageSize.
func (n *Node) receiveTemp(r io.Reader, pattern string) (string, error) {
	tmpDir := filepath.Join(n.cfg.DataDir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(tmpDir, pattern)
	if err != nil {
		return "", err
	}
	nb, err := io.Copy(f, io.LimitReader(r, maxPackageSize+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && nb > maxPackageSize {
		err = fmt.Errorf("%w: package is larger than %d MiB", erg.ErrInvalid, maxPackageSize>>20)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("receive package: %w", err)
	}
	return f.Name(), nil
}
