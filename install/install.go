// Package install is the one way an app gets onto a node: a package file,
// a package fetched from the store, or an app tree under development, each
// made a verified package in hand, unpacked (or copied) into packages/,
// and recorded in the apps table, the version check and the write under
// one lock.
package install

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"

	"erg"
	"erg/apppkg"
)

// Config is what an Installer works on.
type Config struct {
	// DB holds the apps table.
	DB *sql.DB
	// Dir is packages/: one tree per package, named by its CID (or, for
	// an app tree, by the hash of its content).
	Dir string
	// Lock is held for each install, from the version check to the
	// record; whatever else changes Dir or the apps table holds it too.
	Lock sync.Locker
	// TempDir holds an upload while it arrives.
	TempDir string
	// Limits bound a package.
	Limits apppkg.SizeLimits
	Log    *slog.Logger
	// Recorded, if set, is called under Lock once the apps table holds
	// the app at tree.
	Recorded func(m *apppkg.Manifest, tree string)
	// Collect, if set, is called under Lock after a package is installed,
	// to remove the trees no longer used.
	Collect func(ctx context.Context) error
	// Room, if set, is asked before a package is unpacked whether the
	// disk has room for what it unpacks to; an error refuses the install.
	Room func(size int64) error
}

// Installer installs apps into one node's packages/ and apps table.
type Installer struct{ cfg Config }

// New returns an Installer working on cfg.
func New(cfg Config) *Installer {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Lock == nil {
		cfg.Lock = new(sync.Mutex)
	}
	return &Installer{cfg: cfg}
}

// Options tune one install.
type Options struct {
	// SkipOld skips (Result.Installed is false), rather than refuses, a
	// package no newer than the installed version, as starting a node
	// with an apps directory needs.
	SkipOld bool
	// Progress, if set, hears the verifying and unpacking.
	Progress erg.InstallProgress
}

// Result is what an install did.
type Result struct {
	Manifest *apppkg.Manifest
	// Tree is the app's directory under packages/.
	Tree string
	// Installed is false when SkipOld skipped the package.
	Installed bool
}

// A Source is where an install's package comes from: File, DAG or Tree.
type Source interface {
	// open verifies what the source holds and returns it ready to unpack.
	open(ctx context.Context, lim apppkg.SizeLimits, progress erg.InstallProgress) (*candidate, error)
}

// candidate is a verified package in hand.
type candidate struct {
	m    *apppkg.Manifest
	name string // its directory's name under packages/
	// signed packages are version-checked against the installed one;
	// app trees under development are not.
	signed bool
	desc   string // what the logs call it
	pkg    *apppkg.Package
	unpack func(ctx context.Context, dest string, progress erg.InstallProgress) error
	close  func() error
}

// Install verifies src, unpacks it into packages/ unless it is there
// already, and records its app, installing it or upgrading it to a
// higher version. Running grains keep their tree until their next start.
// A refused package leaves nothing behind.
func (in *Installer) Install(ctx context.Context, src Source, opts Options) (Result, error) {
	c, err := src.open(ctx, in.cfg.Limits, opts.Progress)
	if err != nil {
		return Result{}, err
	}
	if c.close != nil {
		defer c.close()
	}
	in.cfg.Lock.Lock()
	defer in.cfg.Lock.Unlock()
	dest := filepath.Join(in.cfg.Dir, c.name)
	if c.signed {
		var version int64
		var tree string
		err := in.cfg.DB.QueryRowContext(ctx, `SELECT version, tree FROM apps WHERE id = ?`, c.m.ID).Scan(&version, &tree)
		if err == nil && c.m.Version <= version {
			if opts.SkipOld {
				if tree != dest {
					in.cfg.Log.Warn("package skipped: not newer than the installed version; raise \"version\" in its manifest to upgrade",
						"file", c.desc, "app", c.m.ID, "version", c.m.Version, "installed", version)
				}
				return Result{Manifest: c.m, Tree: tree}, nil
			}
			return Result{}, fmt.Errorf("%w: %s version %d is not newer than the installed version %d",
				erg.ErrInvalid, c.m.Name, c.m.Version, version)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Result{}, fmt.Errorf("installed version: %w", err)
		}
	}
	created := false
	if _, err := os.Stat(dest); errors.Is(err, os.ErrNotExist) {
		if c.pkg != nil && in.cfg.Room != nil {
			if err := in.cfg.Room(c.pkg.UnpackedBytes()); err != nil {
				return Result{}, fmt.Errorf("install %s: %w", c.m.Name, err)
			}
		}
		if err := c.unpack(ctx, dest, opts.Progress); err != nil {
			return Result{}, err
		}
		created = true
	}
	if err := in.record(ctx, c.m, dest); err != nil {
		if created {
			apppkg.RemoveTree(dest)
		}
		return Result{}, err
	}
	if c.signed {
		in.cfg.Log.Info("package installed", "app", c.m.ID, "name", c.m.Name, "version", c.m.Version, "package", c.name)
		if in.cfg.Collect != nil {
			if err := in.cfg.Collect(ctx); err != nil {
				in.cfg.Log.Warn("remove unused packages", "err", err)
			}
		}
	}
	return Result{Manifest: c.m, Tree: dest, Installed: true}, nil
}

// record records an installed app version and has the node point its
// grains at the new tree for their next start.
func (in *Installer) record(ctx context.Context, m *apppkg.Manifest, tree string) error {
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = in.cfg.DB.ExecContext(ctx, `INSERT INTO apps (id, name, version, display_version, manifest, tree, installed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, version=excluded.version,
			display_version=excluded.display_version, manifest=excluded.manifest, tree=excluded.tree,
			installed_at=excluded.installed_at`,
		m.ID, m.Name, m.Version, m.DisplayVersion, string(manifest), tree, time.Now().Unix())
	if err != nil {
		return fmt.Errorf("record app: %w", err)
	}
	if in.cfg.Recorded != nil {
		in.cfg.Recorded(m, tree)
	}
	return nil
}

// packageCandidate is a verified signed package, unpacked by apppkg.
func packageCandidate(p *apppkg.Package, desc string) *candidate {
	return &candidate{
		m: p.Manifest, name: p.CID.String(), signed: true, desc: desc, pkg: p,
		unpack: func(ctx context.Context, dest string, progress erg.InstallProgress) error {
			opts := apppkg.UnpackOptions{}
			if progress != nil {
				opts.Progress = func(done, total int64) {
					progress(erg.InstallStep{Phase: erg.PhaseUnpacking, Done: done, Total: total})
				}
			}
			if err := apppkg.Unpack(ctx, p, dest, opts); err != nil {
				return fmt.Errorf("unpack %s: %w", p.CID, err)
			}
			return nil
		},
		close: p.Close,
	}
}

type fileSource string

// File is the package file at path, verified as it is opened.
func File(path string) Source { return fileSource(path) }

func (f fileSource) open(ctx context.Context, lim apppkg.SizeLimits, progress erg.InstallProgress) (*candidate, error) {
	var report func(done, total int64)
	if progress != nil {
		report = func(done, total int64) {
			progress(erg.InstallStep{Phase: erg.PhaseVerifying, Done: done, Total: total})
		}
	}
	p, err := apppkg.OpenFileProgress(ctx, string(f), lim, report)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	return packageCandidate(p, string(f)), nil
}

type dagSource struct {
	bs   blockstore.Blockstore
	desc cid.Cid
}

// DAG is the package whose signed descriptor is the block desc in bs, as
// a store fetch leaves it: it is verified and unpacked where it is.
func DAG(bs blockstore.Blockstore, desc cid.Cid) Source { return dagSource{bs, desc} }

func (d dagSource) open(ctx context.Context, lim apppkg.SizeLimits, progress erg.InstallProgress) (*candidate, error) {
	p, err := apppkg.OpenDAG(ctx, d.bs, d.desc, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	progress.Report(erg.InstallStep{Phase: erg.PhaseVerifying, Done: p.Size, Total: p.Size})
	return packageCandidate(p, "descriptor "+d.desc.String()), nil
}
