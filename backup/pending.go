package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// PendingDir is where "Restore this node" puts the node it restores, in
// the data dir; the node adopts it when it next starts (AdoptPending).
const PendingDir = "restore-pending"

// nodeParts are what a restored node replaces in the data dir.
var nodeParts = []string{"erg.db", "erg.db-wal", "erg.db-shm", "identity.key", "p2p-port", "packages", "grains"}

// RestorePending restores a whole node from directories and friends into
// the data dir's PendingDir, for a node that has no owner yet; it becomes
// the node at the next start.
func (s *Service) RestorePending(ctx context.Context, code string, dirs, friends []string) (NodeRestored, error) {
	if s.cfg.DataDir == "" {
		return NodeRestored{}, errors.New("this node cannot restore itself")
	}
	if !s.runMu.TryLock() {
		return NodeRestored{}, errors.New("a restore is already running")
	}
	defer s.runMu.Unlock()
	keys, err := DeriveKeys(code)
	if err != nil {
		return NodeRestored{}, err
	}
	var named []Named
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return NodeRestored{}, fmt.Errorf("the backup directory must be an absolute path")
		}
		if _, err := os.Stat(filepath.Join(d, KindConfig)); err != nil {
			return NodeRestored{}, fmt.Errorf("%s holds no erg backup", d)
		}
		dd, err := OpenDir(d)
		if err != nil {
			return NodeRestored{}, err
		}
		named = append(named, Named{Name: d, Dest: dd})
	}
	var problems []string
	if len(friends) > 0 {
		rc, err := DialForRestore(ctx, keys, friends)
		if rc == nil && len(named) == 0 {
			return NodeRestored{}, err
		}
		if rc != nil {
			defer rc.Close()
			named = append(named, rc.Named...)
		}
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(named) == 0 {
		return NodeRestored{}, errors.New("say where the backups are: a directory or a friend's invite")
	}
	pending := filepath.Join(s.cfg.DataDir, PendingDir)
	removeTree(pending)
	if err := os.MkdirAll(pending, 0o700); err != nil {
		return NodeRestored{}, err
	}
	res, err := RestoreNode(ctx, code, named, pending, s.setStep)
	defer s.endProgress()
	if err != nil {
		removeTree(pending)
		return res, err
	}
	res.Problems = append(problems, res.Problems...)
	s.log.Info("node restored, to be adopted at the next start", "snapshot", res.Snapshot, "grains", res.Grains)
	return res, nil
}

// AdoptPending makes a restored node in dataDir's PendingDir the node:
// what was there (a fresh node with no owner) moves aside to
// replaced-<time>/. It does nothing when no restore is pending.
func AdoptPending(dataDir string) (bool, error) {
	pending := filepath.Join(dataDir, PendingDir)
	for _, f := range []string{"erg.db", "identity.key"} {
		if _, err := os.Stat(filepath.Join(pending, f)); err != nil {
			return false, nil // none, or one that did not finish
		}
	}
	aside := filepath.Join(dataDir, fmt.Sprintf("replaced-%d", time.Now().Unix()))
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return false, err
	}
	for _, p := range nodeParts {
		if err := os.Rename(filepath.Join(dataDir, p), filepath.Join(aside, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	for _, p := range nodeParts {
		if err := os.Rename(filepath.Join(pending, p), filepath.Join(dataDir, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	removeTree(pending)
	for _, d := range []string{"packages", "grains"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o700); err != nil {
			return true, err
		}
	}
	return true, nil
}

// removeTree removes a tree with read-only package dirs in it.
func removeTree(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}
