package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"erg"
	"erg/apppkg"
	"erg/appstore"
	"erg/install"
	"erg/p2p"
	"erg/webui"
)

var _ webui.StoreBackend = (*Node)(nil)

var errNoP2P = fmt.Errorf("%w: this node runs without p2p", erg.ErrInvalid)

// PublishPackage implements webui.StoreBackend: it verifies the package
// exactly as an install does, checks the signed listing describes it and
// names this node as publisher, stores its blocks, and publishes.
func (n *Node) PublishPackage(ctx context.Context, rec []byte, r io.Reader) (erg.Listing, error) {
	if n.p2p == nil {
		return erg.Listing{}, errNoP2P
	}
	l, err := appstore.ParseListing(rec)
	if err != nil {
		return erg.Listing{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	if me := n.p2p.host.ID().String(); l.Publisher != me {
		return erg.Listing{}, fmt.Errorf("%w: the listing names publisher %s, but this node is %s", erg.ErrInvalid, l.Publisher, me)
	}
	f, err := n.receiveTemp(r, "publish-*.erg")
	if err != nil {
		return erg.Listing{}, err
	}
	defer os.Remove(f)
	pkg, err := apppkg.OpenFile(ctx, f, apppkg.SizeLimits{MaxPackage: maxPackageSize})
	if err != nil {
		return erg.Listing{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	defer pkg.Close()
	if pkg.AppID != l.AppID || pkg.Version != l.Version || pkg.CID.String() != l.Package {
		return erg.Listing{}, fmt.Errorf("%w: the listing names app %s version %d package %s, but the file holds app %s version %d package %s",
			erg.ErrInvalid, l.AppID, l.Version, l.Package, pkg.AppID, pkg.Version, pkg.CID)
	}
	desc, err := apppkg.ImportPackage(ctx, pkg, n.p2p.host.Blockstore())
	if err != nil {
		return erg.Listing{}, err
	}
	if desc.String() != l.Descriptor {
		return erg.Listing{}, fmt.Errorf("%w: the listing names descriptor %s, but the package's is %s", erg.ErrInvalid, l.Descriptor, desc)
	}
	var published int64
	err = n.db.QueryRowContext(ctx, `SELECT version FROM store_published WHERE app_id = ?`, l.AppID).Scan(&published)
	if err == nil && published > l.Version {
		return erg.Listing{}, fmt.Errorf("%w: %s version %d is already published; publish a higher version", erg.ErrInvalid, l.Name, published)
	}
	if _, err := n.db.ExecContext(ctx, `INSERT INTO store_published (app_id, version, record, published_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(app_id) DO UPDATE SET version=excluded.version, record=excluded.record, published_at=excluded.published_at`,
		l.AppID, l.Version, rec, time.Now().Unix()); err != nil {
		return erg.Listing{}, fmt.Errorf("record listing: %w", err)
	}
	if err := n.recordProvided(ctx, l); err != nil {
		return erg.Listing{}, err
	}
	if _, err := n.p2p.store.Publish(ctx, rec); err != nil {
		// The listing is kept and announced again on the next round.
		return erg.Listing{}, fmt.Errorf("%s is stored and served, but announcing it failed (is the node connected? see erg status): %w", l.Name, err)
	}
	n.log.Info("app published", "app", l.AppID, "name", l.Name, "version", l.Version, "package", l.Package)
	return n.toListing(ctx, l), nil
}

// recordProvided remembers to announce a listing's package and descriptor
// after restarts.
func (n *Node) recordProvided(ctx context.Context, l *appstore.Listing) error {
	for _, c := range []string{l.Package, l.Descriptor} {
		if _, err := n.db.ExecContext(ctx, `INSERT OR IGNORE INTO store_provided (cid, app_id, added_at) VALUES (?, ?, ?)`,
			c, l.AppID, time.Now().Unix()); err != nil {
			return fmt.Errorf("record provided package: %w", err)
		}
	}
	return nil
}

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

// SearchStore implements webui.StoreBackend.
func (n *Node) SearchStore(ctx context.Context, query string) (erg.SearchReport, error) {
	if n.p2p == nil {
		return erg.SearchReport{}, errNoP2P
	}
	rep, err := n.p2p.store.Search(ctx, query)
	if err != nil {
		return erg.SearchReport{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	out := erg.SearchReport{Results: []erg.Listing{}, Problems: rep.Problems, Peers: rep.Peers}
	for _, r := range rep.Results {
		l := n.toListing(ctx, &r.Listing)
		l.Score, l.Peers = r.Score, r.Peers
		out.Results = append(out.Results, l)
	}
	return out, nil
}

// ShowListing implements webui.StoreBackend.
func (n *Node) ShowListing(ctx context.Context, appID string) (erg.Listing, error) {
	l, err := n.lookup(ctx, appID)
	if err != nil {
		return erg.Listing{}, err
	}
	return n.toListing(ctx, l), nil
}

func (n *Node) lookup(ctx context.Context, appID string) (*appstore.Listing, error) {
	if n.p2p == nil {
		return nil, errNoP2P
	}
	if !apppkg.IsAppID(appID) {
		return nil, fmt.Errorf("%w: %q is not an app id", erg.ErrInvalid, appID)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	l, err := n.p2p.store.Lookup(ctx, appID)
	if errors.Is(err, p2p.ErrNotFound) {
		return nil, fmt.Errorf("%w: no listing of app %s in the store", erg.ErrNotFound, appID)
	}
	return l, err
}

func (n *Node) installedVersion(ctx context.Context, appID string) int64 {
	var v int64
	if err := n.db.QueryRowContext(ctx, `SELECT version FROM apps WHERE id = ?`, appID).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
		n.log.Warn("installed version", "app", appID, "err", err)
	}
	return v
}

func (n *Node) toListing(ctx context.Context, l *appstore.Listing) erg.Listing {
	return erg.Listing{
		AppID: l.AppID, Name: l.Name, Summary: l.Summary, Tags: l.Tags, Version: l.Version,
		DisplayVersion: l.DisplayVersion, Package: l.Package, Descriptor: l.Descriptor, Icon: l.Icon,
		Publisher: l.Publisher, Installed: n.installedVersion(ctx, l.AppID),
	}
}

// InstallFromStore implements webui.StoreBackend: it fetches the newest
// listed package into the blockstore and installs it from there through
// the one install pipeline, which verifies the fetched DAG in place as
// strictly as a package file and unpacks it: the package's bytes are
// written twice, once as blocks and once as the tree. A package refused
// at any step has the blocks its fetch added taken out again; an
// installed package's stay, and are announced, so this node serves it
// onward.
func (n *Node) InstallFromStore(ctx context.Context, appID string, progress erg.InstallProgress) (erg.App, error) {
	l, err := n.lookup(ctx, appID)
	if err != nil {
		return erg.App{}, err
	}
	if v := n.installedVersion(ctx, appID); v >= l.Version {
		return erg.App{}, fmt.Errorf("%w: %s version %d is installed; the store's newest is version %d", erg.ErrInvalid, l.Name, v, l.Version)
	}
	var pmu sync.Mutex
	f, err := n.p2p.store.FetchDAG(ctx, l, appstore.FetchOptions{
		Limits: apppkg.SizeLimits{MaxPackage: maxPackageSize},
		Progress: func(p p2p.FetchProgress) {
			pmu.Lock()
			defer pmu.Unlock()
			progress.Report(erg.InstallStep{Phase: erg.PhaseFetching, Done: p.Bytes, Blocks: p.Blocks, Peers: p.Peers, Elapsed: erg.Duration(p.Elapsed)})
		},
	})
	if err != nil {
		if errors.Is(err, appstore.ErrBadListing) || errors.Is(err, apppkg.ErrTooLarge) || errors.Is(err, p2p.ErrTooLarge) {
			err = fmt.Errorf("%w: %v", erg.ErrInvalid, err)
		}
		return erg.App{}, fmt.Errorf("install %s from the store: %w", l.Name, err)
	}
	res, err := n.installer.Install(ctx, install.DAG(n.p2p.host.Blockstore(), f.Descriptor), install.Options{Progress: progress})
	if err != nil {
		if derr := f.Discard(context.WithoutCancel(ctx)); derr != nil {
			n.log.Warn("discard the blocks of a refused package", "app", appID, "err", derr)
		}
		return erg.App{}, err
	}
	if err := n.recordProvided(ctx, l); err != nil {
		n.log.Warn("record provided", "err", err)
	}
	for _, s := range []string{l.Package, l.Descriptor} {
		c, _ := cid.Decode(s)
		if err := n.p2p.host.Provide(ctx, c); err != nil {
			n.log.Warn("provide installed package", "cid", c, "err", err)
		}
	}
	return appInfo(res.Manifest), nil
}

// StoreUpdates implements webui.StoreBackend.
func (n *Node) StoreUpdates(ctx context.Context) ([]erg.Listing, error) {
	if n.p2p == nil {
		return nil, errNoP2P
	}
	rows, err := n.db.QueryContext(ctx, `SELECT id, version FROM apps ORDER BY name`)
	if err != nil {
		return nil, err
	}
	type app struct {
		id string
		v  int64
	}
	var apps []app
	for rows.Next() {
		var a app
		if err := rows.Scan(&a.id, &a.v); err != nil {
			rows.Close()
			return nil, err
		}
		if apppkg.IsAppID(a.id) {
			apps = append(apps, a)
		}
	}
	rows.Close()
	out := make([]*appstore.Listing, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if l, err := n.p2p.store.Lookup(ctx, a.id); err == nil && l.Version > a.v {
				out[i] = l
			}
		})
	}
	wg.Wait()
	ups := []erg.Listing{}
	for _, l := range out {
		if l != nil {
			ups = append(ups, n.toListing(ctx, l))
		}
	}
	return ups, nil
}
