package node

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/backup"
)

// Paths in the data dir of the backup service's own files (its file
// cache and staging copies) and of the friends' backups this node keeps.
const (
	backupDir = "backup"
	heldDir   = "held"
)

func (n *Node) startBackups(ctx context.Context) (err error) {
	n.backups, err = backup.New(ctx, backup.Config{
		DB:        n.db,
		Dir:       filepath.Join(n.cfg.DataDir, backupDir),
		Held:      filepath.Join(n.cfg.DataDir, heldDir),
		DataDir:   n.cfg.DataDir,
		Grains:    n.grains,
		Identity:  filepath.Join(n.cfg.DataDir, identityFile),
		NodeFiles: []string{filepath.Join(n.cfg.DataDir, p2pPortFile)},
		Packages:  filepath.Join(n.cfg.DataDir, packagesDir),
		Friend: func(ctx context.Context, p string) (backup.Destination, error) {
			id, err := peer.Decode(p)
			if err != nil {
				return nil, err
			}
			return backup.NewRemote(n.p2p.host, id, n.friends.NameOf(ctx, p), n.friends.Connect), nil
		},
		FriendName: n.friends.NameOf,
		FriendPeer: func(ctx context.Context, name string) (string, error) {
			f, err := n.friends.ByName(ctx, name)
			if err != nil {
				return "", fmt.Errorf("%w: no friend %q", erg.ErrNotFound, name)
			}
			return f.Peer, nil
		},
		Log:  n.log.With("subsystem", "backup"),
		Tick: n.cfg.BackupTick,
	})
	if err != nil {
		return err
	}
	n.p2p.host.Libp2p().SetStreamHandler(backup.Protocol, n.backups.ServeStream)
	return nil
}
