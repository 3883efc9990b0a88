package node

import (
	"context"
	"path/filepath"

	"erg/backup"
)

// backupDir holds the backup service's file cache and staging copies.
const backupDir = "backup"

func (n *Node) startBackups(ctx context.Context) (err error) {
	n.backups, err = backup.New(ctx, backup.Config{
		DB:       n.db,
		Dir:      filepath.Join(n.cfg.DataDir, backupDir),
		Grains:   n.grains,
		Identity: filepath.Join(n.cfg.DataDir, identityFile),
		Packages: filepath.Join(n.cfg.DataDir, packagesDir),
		Log:      n.log.With("subsystem", "backup"),
		Tick:     n.cfg.BackupTick,
	})
	return err
}
