package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"erg"
	"erg/apppkg"
	"erg/appstore"
)

// startStoreNodes starts n nodes, each bootstrapping from the one before,
// and waits until each has a peer in its routing table.
func startStoreNodes(t *testing.T, n int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		var boot []string
		if i > 0 {
			boot = nodes[i-1].P2PAddrs()
		}
		nodes[i] = startNode(t, func(c *Config) {
			c.Bootstrap = boot
			c.P2PListen = []string{"/ip4/127.0.0.1/tcp/0"}
		})
	}
	for _, nd := range nodes[1:] {
		waitFor(t, 20*time.Second, "a peer in the routing table", func() bool { return nd.p2p.host.RoutingTableSize() > 0 })
	}
	return nodes
}

// signedListing makes the listing a publisher would sign for pkgFile.
func signedListing(t *testing.T, n *testNode, key ed25519.PrivateKey, pkgFile []byte, tags ...string) []byte {
	t.Helper()
	pkg, err := apppkg.Open(context.Background(), bytes.NewReader(pkgFile), int64(len(pkgFile)), apppkg.SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := apppkg.DescriptorCID(pkg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := appstore.SignListing(appstore.ListingFor(pkg, desc, n.p2p.host.ID().String(), tags, "echoes requests back"), key)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestStorePublishSearchInstallUpdate(t *testing.T) {
	t.Parallel()
	nodes := startStoreNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))

	v1 := packEcho(t, key, 1)
	if _, err := a.store.Publish(ctx, signedListing(t, b, key, v1), bytes.NewReader(v1)); err == nil || !strings.Contains(err.Error(), "names publisher") {
		t.Fatalf("publishing a listing that names another node: %v", err)
	}
	v2 := packEcho(t, key, 2)
	if _, err := a.store.Publish(ctx, signedListing(t, a, key, v1), bytes.NewReader(v2)); err == nil || !strings.Contains(err.Error(), "but the file holds") {
		t.Fatalf("publishing a listing of another package: %v", err)
	}
	l, err := a.store.Publish(ctx, signedListing(t, a, key, v1, "echo", "testing"), bytes.NewReader(v1))
	if err != nil {
		t.Fatal(err)
	}
	if l.AppID != appID || l.Version != 1 {
		t.Fatalf("published %+v", l)
	}

	rep, err := c.store.Search(ctx, "testing")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].AppID != appID || rep.Results[0].Installed != 0 {
		t.Fatalf("search = %+v", rep)
	}
	var last erg.InstallStep // the fetch's
	var phases []string
	app, err := c.store.Install(ctx, appID, func(s erg.InstallStep) {
		if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
			phases = append(phases, s.Phase)
		}
		if s.Phase == erg.PhaseFetching {
			last = s
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if app.ID != appID || app.Version != 1 || last.Done == 0 {
		t.Fatalf("installed %+v, progress %+v", app, last)
	}
	if !slices.Equal(phases, []string{erg.PhaseFetching, erg.PhaseVerifying, erg.PhaseUnpacking}) {
		t.Errorf("the client heard the phases %v", phases)
	}
	if _, err := c.store.Install(ctx, appID, nil); err == nil || !strings.Contains(err.Error(), "is installed") {
		t.Fatalf("installing the same version again: %v", err)
	}
	// The installed app runs.
	id, origin := c.newGrain(appID)
	if code, _ := c.get(origin + "/"); code != 200 {
		t.Fatalf("grain %s of the store-installed app answers %d", id, code)
	}

	// An update: a sees it in the store, b installs v1 from c after the
	// publisher has gone... first publish v2 while a is up.
	if _, err := a.store.Publish(ctx, signedListing(t, a, key, v2, "echo"), bytes.NewReader(v2)); err != nil {
		t.Fatal(err)
	}
	ups, err := c.store.Updates(ctx)
	if err != nil || len(ups) != 1 || ups[0].Version != 2 || ups[0].Installed != 1 {
		t.Fatalf("updates = %+v, %v", ups, err)
	}
	if app, err := c.store.Install(ctx, appID, nil); err != nil || app.Version != 2 {
		t.Fatalf("update = %+v, %v", app, err)
	}
	if ups, _ := c.store.Updates(ctx); len(ups) != 0 {
		t.Fatalf("updates after updating = %+v", ups)
	}
	a.Close()
	if app, err := b.store.Install(ctx, appID, nil); err != nil || app.Version != 2 {
		t.Fatalf("install from the installer after the publisher left = %+v, %v", app, err)
	}
}

func TestStoreRefusedInstallLeavesNothing(t *testing.T) {
	t.Parallel()
	nodes := startStoreNodes(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	v1, v2 := packEcho(t, key, 1), packEcho(t, key, 2)
	if _, err := a.store.Publish(ctx, signedListing(t, a, key, v1), bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Publish(ctx, signedListing(t, a, key, v2), bytes.NewReader(v2)); err != nil {
		t.Fatal(err)
	}
	// The app's key signs a version 3 listing that names v1's package
	// with v2's descriptor: the descriptor's signature does not cover it.
	l1, _ := appstore.ParseListing(signedListing(t, a, key, v1))
	l2, _ := appstore.ParseListing(signedListing(t, a, key, v2))
	mixed := *l2
	mixed.Version, mixed.Package = 3, l1.Package
	rec, err := appstore.SignListing(&mixed, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.p2p.store.Publish(ctx, rec); err != nil {
		t.Fatal(err)
	}
	before := packageDirs(t, b)
	_, err = b.store.Install(ctx, appID, nil)
	if err == nil || !strings.Contains(err.Error(), "signed descriptor names") {
		t.Fatalf("install of a listing that does not match its package: %v", err)
	}
	if got := packageDirs(t, b); len(got) != len(before) {
		t.Errorf("packages after the refusal: %v, before %v", got, before)
	}
	desc, _ := cid.Decode(l2.Descriptor)
	if has, _ := b.p2p.host.Blockstore().Has(ctx, desc); has {
		t.Error("the refused install left its blocks in the blockstore")
	}
	if tmp, _ := os.ReadDir(filepath.Join(b.cfg.DataDir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp holds %d files after the refusal", len(tmp))
	}
	if _, err := b.store.Listing(ctx, "not-an-app-id"); err == nil {
		t.Error("show of a malformed app id succeeded")
	}
}

// Not parallel: it restarts a node on its data dir with Start, which
// meets the previous run's lock while another test forks (see
// testkit.LockHeld).
func TestStoreListingsSurviveARestart(t *testing.T) {
	nodes := startStoreNodes(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	v1 := packEcho(t, key, 1)
	if _, err := b.store.Publish(ctx, signedListing(t, b, key, v1, "restarts"), bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	// b restarts on new ports; it must serve and announce its listing
	// again without being asked.
	cfg := b.cfg
	b.Close()
	cfg.Bootstrap = a.P2PAddrs()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c := startNode(t, func(c *Config) { c.Bootstrap = a.P2PAddrs() })
	waitFor(t, 20*time.Second, "the restarted publisher in the store", func() bool {
		rep, err := c.store.Search(ctx, "restarts")
		return err == nil && len(rep.Results) == 1 && rep.Results[0].AppID == appID
	})
	if app, err := c.store.Install(ctx, appID, nil); err != nil || app.Version != 1 {
		t.Fatalf("install from the restarted publisher = %+v, %v", app, err)
	}
}
