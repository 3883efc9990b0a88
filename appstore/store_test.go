package appstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/network"

	"erg/apppkg"
	"erg/p2p"
	"erg/p2p/p2ptest"
)

// storeNet starts n stores on a line of real hosts on 127.0.0.1.
func storeNet(t testing.TB, n int) []*Store {
	hosts := p2ptest.NewTestNet(t, n, func(_ int, c *p2p.Config) {
		c.Validators = record.NamespacedValidator{ListingNamespace: ListingValidator{}}
	})
	stores := make([]*Store, n)
	for i, h := range hosts {
		stores[i] = NewStore(h, nil)
	}
	return stores
}

// packVersion packs the test app of key at version v.
func packVersion(t testing.TB, key ed25519.PrivateKey, v int64) []byte {
	dir := writeApp(t, key)
	mf := filepath.Join(dir, apppkg.ManifestFile)
	m, _ := os.ReadFile(mf)
	os.WriteFile(mf, bytes.Replace(m, []byte(`"version":3`), []byte(`"version":`+strconv.FormatInt(v, 10)), 1), 0o644)
	b, _ := pack(t, dir, key, apppkg.PackOptions{})
	return b
}

// publish imports a package file into s's blockstore and publishes it.
func publish(t testing.TB, s *Store, key ed25519.PrivateKey, pkgFile []byte, tags ...string) *Listing {
	t.Helper()
	ctx := context.Background()
	pkg, err := openBytes(pkgFile, apppkg.SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := apppkg.ImportPackage(ctx, pkg, s.Host().Blockstore())
	if err != nil {
		t.Fatal(err)
	}
	l := ListingFor(pkg, desc, s.Host().ID().String(), tags, "")
	if _, err := s.Publish(ctx, signT(t, l, key)); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStoreAcrossTwentyNodes(t *testing.T) {
	stores := storeNet(t, 22)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, searcher, third := stores[0], stores[21], stores[11]
	key := testKey(7)
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	file := packVersion(t, key, 3)
	l := publish(t, pub, key, file, "notes", "Writing")
	if l.Icon == "" {
		t.Error("listing has no icon CID")
	}

	// The DHT's own refreshes may have dialed the publisher from the far
	// end of the line; drop that, so the search has to find it through
	// provider records.
	searcher.Host().Libp2p().Network().ClosePeer(pub.Host().ID())
	searcher.Host().Libp2p().Peerstore().ClearAddrs(pub.Host().ID())
	rep, err := searcher.Search(ctx, "writing apps")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].AppID != appID || rep.Results[0].Version != 3 || len(rep.Problems) != 0 {
		t.Fatalf("search = %+v", rep)
	}
	got, err := searcher.Lookup(ctx, appID)
	if err != nil || got.Package != l.Package {
		t.Fatalf("lookup = %+v, %v", got, err)
	}

	var last p2p.FetchProgress
	f, err := searcher.FetchDAG(ctx, got, FetchOptions{Progress: func(p p2p.FetchProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if has, _ := searcher.Host().Blockstore().Has(ctx, mustCID(t, l.Package)); !has {
		t.Error("fetched blocks are not in the node's store")
	}
	pkg, err := apppkg.OpenDAG(ctx, searcher.Host().Blockstore(), f.Descriptor, apppkg.SizeLimits{})
	if err != nil {
		t.Fatalf("the fetched package does not verify: %v", err)
	}
	if pkg.CID.String() != l.Package || pkg.AppID != appID || last.Bytes == 0 || last.Peers == 0 {
		t.Fatalf("fetched %s of %s, progress %+v", pkg.CID, pkg.AppID, last)
	}
	// The installer serves it onward; the publisher leaves.
	for _, c := range []string{l.Package, l.Descriptor} {
		if err := searcher.Host().Provide(ctx, mustCID(t, c)); err != nil {
			t.Fatal(err)
		}
	}
	pub.Host().Close()
	f, err = third.FetchDAG(ctx, got, FetchOptions{Stall: 2 * time.Second})
	if err != nil {
		t.Fatalf("fetch after the publisher left: %v", err)
	}
	if _, err := apppkg.OpenDAG(ctx, third.Host().Blockstore(), f.Descriptor, apppkg.SizeLimits{}); err != nil {
		t.Fatal(err)
	}

	// A newer version wins in the DHT.
	key2 := testKey(8)
	publish(t, stores[5], key2, packVersion(t, key2, 1), "notes")
	publish(t, stores[5], key2, packVersion(t, key2, 2), "notes")
	if l, err := third.Lookup(ctx, apppkg.AppID(key2.Public().(ed25519.PublicKey))); err != nil || l.Version != 2 {
		t.Fatalf("lookup after an update = %+v, %v", l, err)
	}
}

func TestStoreRefusesBadPeers(t *testing.T) {
	stores := storeNet(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, mallory := testKey(1), testKey(2)
	good := publish(t, stores[0], key, packVersion(t, key, 3), "notes")

	serve := func(s *Store, h func(*p2p.Stream)) {
		s.Host().Libp2p().SetStreamHandler(ListingProtocol, func(ns network.Stream) {
			st := p2p.WrapStream(ns, 5*time.Second)
			st.ReadFrame(maxListingRequest)
			h(st)
			st.Close()
		})
		if err := s.Host().Provide(ctx, KeywordKey("notes")); err != nil {
			t.Fatal(err)
		}
	}
	// Forged: app key's listing with a new version, signed by mallory.
	forgedRec := forgeListing(t, testListing(key, 99), mallory)
	serve(stores[1], func(st *p2p.Stream) { p2p.WriteFrame(st, forgedRec); p2p.WriteFrame(st, nil) })
	serve(stores[2], func(st *p2p.Stream) { p2p.WriteFrame(st, make([]byte, MaxListingSize+1)) })
	serve(stores[3], func(st *p2p.Stream) { time.Sleep(2 * listingStall) })

	rep, err := stores[5].Search(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Version != 3 || rep.Results[0].Package != good.Package {
		t.Errorf("results = %+v", rep.Results)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"bad signature", "oversized response", "stalled"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems do not say %q:\n%s", want, all)
		}
	}
	t.Logf("problems:\n%s", all)

	// A listing signed by the right key whose package is not the one its
	// descriptor signs: the fetch refuses it and keeps nothing.
	v4 := publish(t, stores[0], key, packVersion(t, key, 4), "notes")
	mixed := *v4
	mixed.Package = good.Package
	_, err = stores[4].FetchDAG(ctx, &mixed, FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "signed descriptor names") {
		t.Fatalf("fetch of a mismatched listing: %v", err)
	}
	if has, _ := stores[4].Host().Blockstore().Has(ctx, mustCID(t, v4.Descriptor)); has {
		t.Error("the refused fetch left its descriptor block behind")
	}
}

// forgeListing signs l, which names another app, with key.
func forgeListing(t testing.TB, l *Listing, key ed25519.PrivateKey) []byte {
	body, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	rec := append([]byte(listingMagic), binary.AppendUvarint(nil, uint64(len(body)))...)
	rec = append(rec, body...)
	return append(rec, ed25519.Sign(key, listingSigned(ListingKey(l.AppID), body))...)
}

func mustCID(t testing.TB, s string) cid.Cid {
	c, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
