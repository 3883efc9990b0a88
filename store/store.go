// Package store is the node's part in the app store: the listings it
// published and the packages it provides, announced again on a schedule;
// search and listing lookups; and installs and updates from the store,
// which go through the node's one install pipeline. The protocol itself
// (listings in the DHT, search, package fetch) is package appstore; this
// package keeps what one node did with it, in its store_published and
// store_provided tables.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"erg"
	"erg/apppkg"
	"erg/appstore"
	"erg/install"
	"erg/p2p"
)

// DefaultInterval is how often listings go into the DHT again and the
// served packages are announced; DHT records expire after 48 hours.
const DefaultInterval = 12 * time.Hour

// DefaultMaxPackage bounds a package published or installed when
// Config.MaxPackage is zero.
const DefaultMaxPackage = 1 << 30

// lookupTimeout bounds the DHT lookup of one listing; updateTimeout that of
// each installed app's while listing updates.
const (
	lookupTimeout = 20 * time.Second
	updateTimeout = 10 * time.Second
)

var errNoP2P = fmt.Errorf("%w: this node runs without p2p", erg.ErrInvalid)

// Config is what a Service works with.
type Config struct {
	// Store is the app store on the node's p2p host, whose blockstore
	// holds the packages published and installed.
	Store *appstore.Store
	// DB holds the store_published and store_provided tables.
	DB *sql.DB
	// Installer installs what Install fetched.
	Installer *install.Installer
	// MaxPackage bounds a package; zero means DefaultMaxPackage.
	MaxPackage int64
	Log        *slog.Logger
	// Joined, once closed, says the host is in the network: the first
	// announcement waits for it. Nil means at once.
	Joined <-chan struct{}
	// Interval is how often the announcements run; zero means
	// DefaultInterval.
	Interval time.Duration
}

// Service is one node's part in the app store. Its methods are safe on a
// nil *Service, which stands for a node without p2p: they fail with an
// Invalid error saying so.
type Service struct {
	cfg  Config
	st   *appstore.Store
	host *p2p.Host
	log  *slog.Logger

	publishMu sync.Mutex // one publish at a time: the version check and the record go together

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New serves the listings this node published again and starts the loop
// that announces them, and the packages it provides, once cfg.Joined is
// closed and every cfg.Interval after. Close stops it.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.DB == nil || cfg.Installer == nil {
		return nil, errors.New("store: Config needs Store, DB and Installer")
	}
	if cfg.MaxPackage == 0 {
		cfg.MaxPackage = DefaultMaxPackage
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, st: cfg.Store, host: cfg.Store.Host(), log: cfg.Log}
	if err := s.loadPublished(ctx); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.loop(bg) })
	return s, nil
}

// Close stops the announcement loop and waits for it. It leaves the host
// and the database open: they are the caller's.
func (s *Service) Close() error {
	if s == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// loadPublished serves this node's published listings again after a
// restart.
func (s *Service) loadPublished(ctx context.Context) error {
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT record FROM store_published`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return err
		}
		if err := s.st.Serve(rec); err != nil {
			s.log.Warn("serve a published listing", "err", err)
		}
	}
	return rows.Err()
}

// loop waits until the host has joined the network, then announces what
// this node serves, now and every Interval.
func (s *Service) loop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-s.cfg.Joined:
	}
	for {
		if s.host.RoutingTableSize() > 0 {
			s.host.RefreshRoutingTable(ctx)
		}
		s.Announce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Interval):
		}
	}
}

// Announce provides every package this node serves and puts its
// listings in the DHT again: one round of what the loop does on its
// schedule.
func (s *Service) Announce(ctx context.Context) {
	if s == nil {
		return
	}
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT cid FROM store_provided`)
	if err != nil {
		return
	}
	var keys []cid.Cid
	for rows.Next() {
		var str string
		if rows.Scan(&str) == nil {
			if c, err := cid.Decode(str); err == nil {
				keys = append(keys, c)
			}
		}
	}
	rows.Close()
	for _, c := range keys {
		if err := s.host.Provide(ctx, c); err != nil && ctx.Err() == nil {
			s.log.Debug("provide", "cid", c, "err", err)
		}
	}
	s.st.Republish(ctx)
}

// Publish verifies a package read from r exactly as an install does,
// checks the signed listing rec describes it and names this node as
// publisher, stores its blocks, and publishes: the listing is served and
// announced from then on, after restarts too. A version lower than one
// published already is refused.
func (s *Service) Publish(ctx context.Context, rec []byte, r io.Reader) (erg.Listing, error) {
	if s == nil {
		return erg.Listing{}, errNoP2P
	}
	l, err := appstore.ParseListing(rec)
	if err != nil {
		return erg.Listing{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	if me := s.host.ID().String(); l.Publisher != me {
		return erg.Listing{}, fmt.Errorf("%w: the listing names publisher %s, but this node is %s", erg.ErrInvalid, l.Publisher, me)
	}
	f, err := s.cfg.Installer.Receive(r, "publish-*.erg")
	if err != nil {
		return erg.Listing{}, err
	}
	defer os.Remove(f)
	pkg, err := apppkg.OpenFile(ctx, f, s.limits())
	if err != nil {
		return erg.Listing{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	defer pkg.Close()
	if pkg.AppID != l.AppID || pkg.Version != l.Version || pkg.CID.String() != l.Package {
		return erg.Listing{}, fmt.Errorf("%w: the listing names app %s version %d package %s, but the file holds app %s version %d package %s",
			erg.ErrInvalid, l.AppID, l.Version, l.Package, pkg.AppID, pkg.Version, pkg.CID)
	}
	desc, err := apppkg.ImportPackage(ctx, pkg, s.host.Blockstore())
	if err != nil {
		return erg.Listing{}, err
	}
	if desc.String() != l.Descriptor {
		return erg.Listing{}, fmt.Errorf("%w: the listing names descriptor %s, but the package's is %s", erg.ErrInvalid, l.Descriptor, desc)
	}
	if err := s.record(ctx, l, rec); err != nil {
		return erg.Listing{}, err
	}
	if _, err := s.st.Publish(ctx, rec); err != nil {
		// The listing is kept and announced again on the next round.
		return erg.Listing{}, fmt.Errorf("%s is stored and served, but announcing it failed (is the node connected? see erg status): %w", l.Name, err)
	}
	s.log.Info("app published", "app", l.AppID, "name", l.Name, "version", l.Version, "package", l.Package)
	return s.toListing(ctx, l), nil
}

// record keeps a listing to publish as this node's, unless a higher
// version is published already.
func (s *Service) record(ctx context.Context, l *appstore.Listing, rec []byte) error {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	var published int64
	err := s.cfg.DB.QueryRowContext(ctx, `SELECT version FROM store_published WHERE app_id = ?`, l.AppID).Scan(&published)
	if err == nil && published > l.Version {
		return fmt.Errorf("%w: %s version %d is already published; publish a higher version", erg.ErrInvalid, l.Name, published)
	}
	if _, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO store_published (app_id, version, record, published_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(app_id) DO UPDATE SET version=excluded.version, record=excluded.record, published_at=excluded.published_at`,
		l.AppID, l.Version, rec, time.Now().Unix()); err != nil {
		return fmt.Errorf("record listing: %w", err)
	}
	return s.recordProvided(ctx, l)
}

// recordProvided remembers to announce a listing's package and descriptor
// after restarts.
func (s *Service) recordProvided(ctx context.Context, l *appstore.Listing) error {
	for _, c := range []string{l.Package, l.Descriptor} {
		if _, err := s.cfg.DB.ExecContext(ctx, `INSERT OR IGNORE INTO store_provided (cid, app_id, added_at) VALUES (?, ?, ?)`,
			c, l.AppID, time.Now().Unix()); err != nil {
			return fmt.Errorf("record provided package: %w", err)
		}
	}
	return nil
}

func (s *Service) limits() apppkg.SizeLimits { return apppkg.SizeLimits{MaxPackage: s.cfg.MaxPackage} }

// Search finds apps in the store by words; each result says which
// version, if any, is installed here.
func (s *Service) Search(ctx context.Context, query string) (erg.SearchReport, error) {
	if s == nil {
		return erg.SearchReport{}, errNoP2P
	}
	rep, err := s.st.Search(ctx, query)
	if err != nil {
		return erg.SearchReport{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	out := erg.SearchReport{Results: []erg.Listing{}, Problems: rep.Problems, Peers: rep.Peers}
	for _, r := range rep.Results {
		l := s.toListing(ctx, &r.Listing)
		l.Score, l.Peers = r.Score, r.Peers
		out.Results = append(out.Results, l)
	}
	return out, nil
}

// Listing looks an app's newest listing up in the DHT.
func (s *Service) Listing(ctx context.Context, appID string) (erg.Listing, error) {
	l, err := s.lookup(ctx, appID)
	if err != nil {
		return erg.Listing{}, err
	}
	return s.toListing(ctx, l), nil
}

func (s *Service) lookup(ctx context.Context, appID string) (*appstore.Listing, error) {
	if s == nil {
		return nil, errNoP2P
	}
	if !apppkg.IsAppID(appID) {
		return nil, fmt.Errorf("%w: %q is not an app id", erg.ErrInvalid, appID)
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	l, err := s.st.Lookup(ctx, appID)
	if errors.Is(err, p2p.ErrNotFound) {
		return nil, fmt.Errorf("%w: no listing of app %s in the store", erg.ErrNotFound, appID)
	}
	return l, err
}

// installedVersion is the installed version of an app, 0 if none (or if
// the apps cannot say).
func (s *Service) installedVersion(ctx context.Context, appID string) int64 {
	v, err := s.cfg.Installer.Version(ctx, appID)
	if err != nil {
		s.log.Warn("installed version", "app", appID, "err", err)
	}
	return v
}

func (s *Service) toListing(ctx context.Context, l *appstore.Listing) erg.Listing {
	return erg.Listing{
		AppID: l.AppID, Name: l.Name, Summary: l.Summary, Tags: l.Tags, Version: l.Version,
		DisplayVersion: l.DisplayVersion, Package: l.Package, Descriptor: l.Descriptor, Icon: l.Icon,
		Publisher: l.Publisher, Installed: s.installedVersion(ctx, l.AppID),
	}
}

// Install fetches the newest listed package of an app into the
// blockstore and installs it from there through the one install
// pipeline, which verifies the fetched DAG in place as strictly as a
// package file and unpacks it: the package's bytes are written twice,
// once as blocks and once as the tree. A package refused at any step has
// the blocks its fetch added taken out again; an installed package's
// stay, and are announced, so this node serves it onward. progress, which
// may be nil, hears the fetching, verifying and unpacking.
func (s *Service) Install(ctx context.Context, appID string, progress erg.InstallProgress) (erg.App, error) {
	l, err := s.lookup(ctx, appID)
	if err != nil {
		return erg.App{}, err
	}
	if v := s.installedVersion(ctx, appID); v >= l.Version {
		return erg.App{}, fmt.Errorf("%w: %s version %d is installed; the store's newest is version %d", erg.ErrInvalid, l.Name, v, l.Version)
	}
	var pmu sync.Mutex
	f, err := s.st.FetchDAG(ctx, l, appstore.FetchOptions{
		Limits: s.limits(),
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
	res, err := s.cfg.Installer.Install(ctx, install.DAG(s.host.Blockstore(), f.Descriptor), install.Options{Progress: progress})
	if err != nil {
		if derr := f.Discard(context.WithoutCancel(ctx)); derr != nil {
			s.log.Warn("discard the blocks of a refused package", "app", appID, "err", derr)
		}
		return erg.App{}, err
	}
	if err := s.recordProvided(ctx, l); err != nil {
		s.log.Warn("record provided", "err", err)
	}
	for _, str := range []string{l.Package, l.Descriptor} {
		c, _ := cid.Decode(str)
		if err := s.host.Provide(ctx, c); err != nil {
			s.log.Warn("provide installed package", "cid", c, "err", err)
		}
	}
	return install.Describe(res.Manifest), nil
}

// Updates lists the installed apps that have a newer version in the
// store, each with the version installed.
func (s *Service) Updates(ctx context.Context) ([]erg.Listing, error) {
	if s == nil {
		return nil, errNoP2P
	}
	installed, err := s.cfg.Installer.Versions(ctx)
	if err != nil {
		return nil, err
	}
	var apps []install.AppVersion
	for _, a := range installed {
		if apppkg.IsAppID(a.ID) {
			apps = append(apps, a)
		}
	}
	out := make([]*appstore.Listing, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, updateTimeout)
			defer cancel()
			if l, err := s.st.Lookup(ctx, a.ID); err == nil && l.Version > a.Version {
				out[i] = l
			}
		})
	}
	wg.Wait()
	ups := []erg.Listing{}
	for _, l := range out {
		if l != nil {
			ups = append(ups, s.toListing(ctx, l))
		}
	}
	return ups, nil
}
