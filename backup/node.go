package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"erg"
	"erg/db"
)

// NodeRestored says what RestoreNode did.
type NodeRestored struct {
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	Grains   int       `json:"grains"`
	Missing  []string  `json:"missing,omitempty"` // grains no backup of which could be read
	Problems []string  `json:"problems,omitempty"`
}

// RestoreNode makes a whole node again in dataDir, which must hold no
// node yet: from the newest node snapshot that reads whole, its database,
// identity key and package trees; then every grain that database lists,
// each from its newest readable snapshot. The node started on dataDir
// afterwards is the same node to its friends (the same key).
func RestoreNode(ctx context.Context, code string, dests []Named, dataDir string, progress func(erg.BackupProgress)) (NodeRestored, error) {
	var out NodeRestored
	if progress == nil {
		progress = func(erg.BackupProgress) {}
	}
	// step says which part is being restored; the restorer, how far.
	step := func(p erg.BackupProgress, r *Restorer) {
		progress(p)
		r.Progress = func(q Progress) {
			p.Files, p.FilesDone, p.Bytes, p.BytesDone = q.Files, q.FilesDone, q.Bytes, q.BytesDone
			progress(p)
		}
	}
	keys, err := DeriveKeys(code)
	if err != nil {
		return out, err
	}
	for _, f := range []string{"erg.db", "identity.key"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
			return out, fmt.Errorf("%s already holds a node (%s): restore onto an empty data dir", dataDir, f)
		}
	}
	r, err := NewRestorer(ctx, keys, dests)
	if err != nil {
		return out, err
	}
	stage := filepath.Join(dataDir, "restore-staging")
	os.RemoveAll(stage)
	defer os.RemoveAll(stage)
	pkgs := filepath.Join(dataDir, "packages")
	step(erg.BackupProgress{What: "restore", Source: "the node: its identity, database and apps"}, r)
	h, _, err := r.Latest(ctx, func(h Header) bool { return h.Kind == "node" }, nil, func() (map[string]string, func(), error) {
		os.RemoveAll(stage)
		for _, d := range []string{stage, pkgs} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, nil, err
			}
		}
		return map[string]string{"db": stage, "packages": pkgs}, func() { os.RemoveAll(stage); emptyDir(pkgs) }, nil
	})
	if err != nil {
		out.Problems = r.Problems
		return out, fmt.Errorf("no backup of the node could be read: %w", err)
	}
	out.Snapshot, out.Time = h.Name, h.Time
	// Package trees are read-only once unpacked, as apppkg leaves them.
	filepath.WalkDir(pkgs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != pkgs {
			defer os.Chmod(p, 0o555)
		}
		return nil
	})
	ids, err := grainIDs(ctx, filepath.Join(stage, "erg.db"))
	if err != nil {
		return out, err
	}
	for i, id := range ids {
		step(erg.BackupProgress{What: "restore", Source: "grain " + id, SourcesDone: i, Sources: len(ids)}, r)
		varDir := filepath.Join(dataDir, "grains", id, "var")
		_, _, err := r.Latest(ctx, func(h Header) bool { return h.Kind == "grain" && h.Grain == id }, nil, func() (map[string]string, func(), error) {
			os.RemoveAll(varDir)
			if err := os.MkdirAll(varDir, 0o700); err != nil {
				return nil, nil, err
			}
			return map[string]string{"var": varDir}, func() { emptyDir(varDir) }, nil
		})
		if err != nil {
			out.Missing = append(out.Missing, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		out.Grains++
	}
	// The database and key go in last: a data dir with them is a node,
	// so an interrupted restore can be run again.
	ents, _ := os.ReadDir(stage)
	for _, e := range ents {
		if e.Name() == "erg.db" || e.Name() == "identity.key" || !e.Type().IsRegular() {
			continue
		}
		os.Rename(filepath.Join(stage, e.Name()), filepath.Join(dataDir, e.Name()))
	}
	for _, f := range []string{"identity.key", "erg.db"} {
		if err := os.Rename(filepath.Join(stage, f), filepath.Join(dataDir, f)); err != nil {
			return out, fmt.Errorf("restore %s: %w", f, err)
		}
	}
	out.Problems = r.Problems
	return out, nil
}

func grainIDs(ctx context.Context, path string) ([]string, error) {
	d, err := db.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("the restored database: %w", err)
	}
	defer d.Close()
	rows, err := d.QueryContext(ctx, `SELECT id FROM grains ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 && rows.Err() == nil {
		return nil, nil
	}
	return ids, errors.Join(rows.Err())
}
