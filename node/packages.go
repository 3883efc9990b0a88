package node

import (
	"context"
	"path/filepath"

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
		TempDir:  filepath.Join(n.cfg.DataDir, "tmp"),
		Lock:     &n.installMu,
		Limits:   apppkg.SizeLimits{MaxPackage: maxPackageSize},
		Log:      n.log,
		Recorded: func(m *apppkg.Manifest, tree string) { n.grains.AppRecorded(m, tree) },
		Collect:  func(ctx context.Context) error { return n.grains.CollectPackagesLocked(ctx) },
		Room:     func(size int64) error { return n.grains.CheckFree(size) },
	})
}
