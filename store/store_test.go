package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	record "github.com/libp2p/go-libp2p-record"

	"erg"
	"erg/apppkg"
	"erg/appstore"
	"erg/db"
	"erg/install"
	"erg/p2p"
	"erg/p2p/p2ptest"
)

// testNet starts n hosts joined in a line, with the store's validator.
func testNet(t *testing.T, n int) []*p2p.Host {
	return p2ptest.NewTestNet(t, n, func(i int, c *p2p.Config) {
		c.Validators = record.NamespacedValidator{appstore.ListingNamespace: appstore.ListingValidator{}}
	})
}

// fixture is one node's store on h: a real database with the whole
// schema and a real installer into a temporary packages/.
type fixture struct {
	*Service
	db  *sql.DB
	tmp string
}

func newFixture(t *testing.T, h *p2p.Host, joined <-chan struct{}) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	pkgs := filepath.Join(dir, "packages")
	if err := os.Mkdir(pkgs, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { apppkg.RemoveTree(pkgs) })
	tmp := filepath.Join(dir, "tmp")
	s, err := New(ctx, Config{
		Store:     appstore.NewStore(h, nil),
		DB:        d,
		Installer: install.New(install.Config{DB: d, Dir: pkgs, TempDir: tmp, Lock: &sync.Mutex{}}),
		Joined:    joined,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fixture{Service: s, db: d, tmp: tmp}
}

// packApp packs a small app signed by key at version.
func packApp(t *testing.T, key ed25519.PrivateKey, version int) []byte {
	t.Helper()
	dir := t.TempDir()
	manifest := fmt.Sprintf(`{"id":%q,"name":"Listed","version":%d,"displayVersion":"0.%d","command":["/bin/app"],"port":8000,
	"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`, apppkg.AppID(key.Public().(ed25519.PublicKey)), version, version)
	for name, content := range map[string]string{apppkg.ManifestFile: manifest, "bin/app": "#!/bin/sh\necho hi\n"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var file bytes.Buffer
	if _, err := apppkg.Pack(context.Background(), dir, key, &file, apppkg.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	return file.Bytes()
}

// listingFor signs the listing of pkgFile naming publisher.
func listingFor(t *testing.T, key ed25519.PrivateKey, pkgFile []byte, publisher string, tags ...string) ([]byte, *appstore.Listing) {
	t.Helper()
	pkg, err := apppkg.Open(context.Background(), bytes.NewReader(pkgFile), int64(len(pkgFile)), apppkg.SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer pkg.Close()
	desc, err := apppkg.DescriptorCID(pkg)
	if err != nil {
		t.Fatal(err)
	}
	l := appstore.ListingFor(pkg, desc, publisher, tags, "a listed app")
	rec, err := appstore.SignListing(l, key)
	if err != nil {
		t.Fatal(err)
	}
	return rec, l
}

func wantInvalid(t *testing.T, what string, err error, text string) {
	t.Helper()
	if erg.KindOf(err) != erg.Invalid || !strings.Contains(err.Error(), text) {
		t.Fatalf("%s: %v (kind %v), want an Invalid error saying %q", what, err, erg.KindOf(err), text)
	}
}

func TestPublishSearchInstallUpdate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := testNet(t, 2)
	pub, inst := newFixture(t, hosts[0], nil), newFixture(t, hosts[1], nil)
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	me := hosts[0].ID().String()
	v1, v2 := packApp(t, key, 1), packApp(t, key, 2)

	rec, _ := listingFor(t, key, v1, hosts[1].ID().String())
	_, err := pub.Publish(ctx, rec, bytes.NewReader(v1))
	wantInvalid(t, "a listing naming another publisher", err, "names publisher")
	rec, _ = listingFor(t, key, v1, me)
	_, err = pub.Publish(ctx, rec, bytes.NewReader(v2))
	wantInvalid(t, "a listing of another package", err, "but the file holds")
	_, err = pub.Publish(ctx, []byte("not a listing"), bytes.NewReader(v1))
	wantInvalid(t, "a malformed listing", err, "")

	rec1, l1 := listingFor(t, key, v1, me, "listed", "testing")
	got, err := pub.Publish(ctx, rec1, bytes.NewReader(v1))
	if err != nil {
		t.Fatal(err)
	}
	if got.AppID != appID || got.Version != 1 || got.Publisher != me || got.Installed != 0 {
		t.Fatalf("published %+v", got)
	}
	var provided []string
	rows, err := pub.db.Query(`SELECT cid FROM store_provided WHERE app_id = ? ORDER BY cid`, appID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		provided = append(provided, c)
	}
	rows.Close()
	want := []string{l1.Descriptor, l1.Package}
	slices.Sort(want)
	if !slices.Equal(provided, want) {
		t.Errorf("store_provided holds %v, want %v", provided, want)
	}
	if es, _ := os.ReadDir(pub.tmp); len(es) != 0 {
		t.Errorf("tmp holds %d files after the publishes", len(es))
	}

	rep, err := inst.Search(ctx, "testing")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].AppID != appID || rep.Results[0].Installed != 0 || rep.Results[0].Peers != 1 {
		t.Fatalf("search = %+v", rep)
	}
	if l, err := inst.Listing(ctx, appID); err != nil || l.Version != 1 || l.Package != l1.Package {
		t.Fatalf("listing = %+v, %v", l, err)
	}
	_, err = inst.Listing(ctx, "not-an-app-id")
	wantInvalid(t, "the listing of a malformed app id", err, "not an app id")
	other, _ := apppkg.GenerateKey()
	if _, err := inst.Listing(ctx, apppkg.AppID(other.Public().(ed25519.PublicKey))); erg.KindOf(err) != erg.NotFound {
		t.Fatalf("the listing of an app never published: %v", err)
	}

	var phases []string
	app, err := inst.Install(ctx, appID, func(s erg.InstallStep) {
		if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
			phases = append(phases, s.Phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if app.ID != appID || app.Version != 1 {
		t.Fatalf("installed %+v", app)
	}
	if want := []string{erg.PhaseFetching, erg.PhaseVerifying, erg.PhaseUnpacking}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	// The installer serves what it installed.
	desc, _ := cid.Decode(l1.Descriptor)
	if has, _ := hosts[1].Blockstore().Has(ctx, desc); !has {
		t.Error("the installed package's descriptor is not in the installer's blockstore")
	}
	var n int
	inst.db.QueryRow(`SELECT count(*) FROM store_provided WHERE app_id = ?`, appID).Scan(&n)
	if n != 2 {
		t.Errorf("the installer provides %d blocks of the app, want 2", n)
	}
	_, err = inst.Install(ctx, appID, nil)
	wantInvalid(t, "installing the same version again", err, "is installed")
	if l, _ := inst.Listing(ctx, appID); l.Installed != 1 {
		t.Errorf("listing after the install says installed %d", l.Installed)
	}
	if ups, err := inst.Updates(ctx); err != nil || len(ups) != 0 {
		t.Fatalf("updates before v2 = %+v, %v", ups, err)
	}

	rec2, _ := listingFor(t, key, v2, me, "listed")
	if _, err := pub.Publish(ctx, rec2, bytes.NewReader(v2)); err != nil {
		t.Fatal(err)
	}
	_, err = pub.Publish(ctx, rec1, bytes.NewReader(v1))
	wantInvalid(t, "publishing a lower version", err, "already published")
	ups, err := inst.Updates(ctx)
	if err != nil || len(ups) != 1 || ups[0].Version != 2 || ups[0].Installed != 1 {
		t.Fatalf("updates = %+v, %v", ups, err)
	}
	if app, err := inst.Install(ctx, appID, nil); err != nil || app.Version != 2 {
		t.Fatalf("update = %+v, %v", app, err)
	}
	if ups, err := inst.Updates(ctx); err != nil || len(ups) != 0 {
		t.Fatalf("updates after updating = %+v, %v", ups, err)
	}
}

func TestPublishedListingsAreAnnouncedOnceJoined(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := testNet(t, 2)
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	rec, l := listingFor(t, key, packApp(t, key, 1), hosts[0].ID().String(), "restarts")

	// What an earlier run of the node published is in its database.
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(`INSERT INTO store_published (app_id, version, record, published_at) VALUES (?, 1, ?, 0)`, appID, rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{l.Package, l.Descriptor} {
		if _, err := d.Exec(`INSERT INTO store_provided (cid, app_id, added_at) VALUES (?, ?, 0)`, c, appID); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()

	joined := make(chan struct{})
	s, err := New(ctx, Config{
		Store: appstore.NewStore(hosts[0], nil), DB: mustOpen(t, filepath.Join(dir, "erg.db")),
		Installer: install.New(install.Config{}), Joined: joined,
	})
	if err != nil {
		t.Fatal(err)
	}
	searcher := appstore.NewStore(hosts[1], nil)
	pkgCID, _ := cid.Decode(l.Package)
	// Served at once, but nothing announced before the host has joined.
	time.Sleep(200 * time.Millisecond)
	if ps := hosts[1].FindProviders(ctx, pkgCID, 1); len(ps) != 0 {
		t.Fatalf("the package was announced before the host joined: %v", ps)
	}
	close(joined)
	// The listing, its package's providers and its keywords are put one
	// after another: wait for all three.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := searcher.Lookup(ctx, appID)
		var rep *appstore.SearchReport
		if err == nil && got.Version == 1 && len(hosts[1].FindProviders(ctx, pkgCID, 1)) == 1 {
			rep, err = searcher.Search(ctx, "restarts")
			if err == nil && len(rep.Results) == 1 && rep.Results[0].AppID == appID {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listing was not announced after the host joined: search %+v, %v", rep, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the announcement loop")
	}
}

func mustOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	d, err := db.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestPublishRefusesAnOversizedPackage(t *testing.T) {
	hosts := testNet(t, 1)
	f := newFixture(t, hosts[0], nil)
	f.cfg.MaxPackage = 1 << 10
	// A publish arrives through the installer's Receive, under its limit.
	f.cfg.Installer = install.New(install.Config{DB: f.db, Dir: filepath.Join(filepath.Dir(f.tmp), "packages"), TempDir: f.tmp,
		Lock: &sync.Mutex{}, Limits: apppkg.SizeLimits{MaxPackage: 1 << 10}})
	key, _ := apppkg.GenerateKey()
	v1 := packApp(t, key, 1)
	rec, _ := listingFor(t, key, v1, hosts[0].ID().String())
	_, err := f.Publish(context.Background(), rec, bytes.NewReader(bytes.Repeat(v1, 1+(1<<10)/len(v1))))
	wantInvalid(t, "an oversized package", err, "larger than")
	if es, _ := os.ReadDir(f.tmp); len(es) != 0 {
		t.Errorf("tmp holds %d files after the refusal", len(es))
	}
}

func TestWithoutP2P(t *testing.T) {
	ctx := context.Background()
	var s *Service
	_, err := s.Publish(ctx, nil, strings.NewReader(""))
	wantInvalid(t, "publish", err, "without p2p")
	_, err = s.Search(ctx, "x")
	wantInvalid(t, "search", err, "without p2p")
	_, err = s.Listing(ctx, "x")
	wantInvalid(t, "listing", err, "without p2p")
	_, err = s.Install(ctx, "x", nil)
	wantInvalid(t, "install", err, "without p2p")
	_, err = s.Updates(ctx)
	wantInvalid(t, "updates", err, "without p2p")
	s.Announce(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{}); err == nil {
		t.Fatal("New with an empty Config succeeded")
	}
}

func TestConcurrentPublishesKeepTheHighestVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := testNet(t, 2)
	pub := newFixture(t, hosts[0], nil)
	key, _ := apppkg.GenerateKey()
	me := hosts[0].ID().String()
	files := [][]byte{packApp(t, key, 1), packApp(t, key, 2)}
	var wg sync.WaitGroup
	for _, f := range files {
		rec, _ := listingFor(t, key, f, me)
		wg.Go(func() {
			// v1 is refused if v2 is recorded first, or fails to
			// announce if v2 reached the DHT first.
			if _, err := pub.Publish(ctx, rec, bytes.NewReader(f)); err != nil && !strings.Contains(err.Error(), "already published") &&
				!strings.Contains(err.Error(), "replace a newer value") {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var v int64
	if err := pub.db.QueryRow(`SELECT version FROM store_published`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("published version %d, %v; want 2", v, err)
	}
}
