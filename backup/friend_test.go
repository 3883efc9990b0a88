package backup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg/db"
	"erg/p2p"
	"erg/p2p/p2ptest"
)

func holderOn(t *testing.T, h *p2p.Host) *Holder {
	t.Helper()
	d, err := db.Open(context.Background(), filepath.Join(t.TempDir(), "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	hold := NewHolder(d, filepath.Join(t.TempDir(), "held"), nil)
	h.Libp2p().SetStreamHandler(Protocol, hold.Serve)
	return hold
}

func connect(t *testing.T, from, to *p2p.Host) {
	t.Helper()
	if err := from.Connect(context.Background(), peer.AddrInfo{ID: to.ID(), Addrs: to.Libp2p().Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// A friend keeps only what fits the space offered, only for the node it
// was offered to, and gives it back only to that node and to the peer
// of its recovery code; what it keeps is ciphertext.
func TestFriendKeepsBackupsWithinTheOffer(t *testing.T) {
	ctx := context.Background()
	hosts := p2ptest.NewTestNet(t, 2, nil)
	a, b := hosts[0], hosts[1]
	hold := holderOn(t, b)
	k, code := testKeys(t)
	src := t.TempDir()
	secret := append([]byte("PLANTED-IN-A-"), randBytes(3<<20)...)
	writeFile(t, filepath.Join(src, "f"), secret)
	writeFile(t, filepath.Join(src, "title.txt"), []byte("PLANTED-TITLE"))
	remote := NewRemote(a, b.ID(), "bob", nil)
	source := Source{Kind: "grain", Grain: GrainMeta{ID: "g1", Title: "PLANTED-TITLE"}, Roots: map[string]string{"var": src}}

	// No offer: refused, clearly.
	if err := remote.Put(ctx, KindConfig, configName, []byte("{}")); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("put without an offer: %v", err)
	}
	// An offer too small: the snapshot is refused and none is half there.
	if err := hold.Offer(ctx, a.ID().String(), 1<<20); err != nil {
		t.Fatal(err)
	}
	run := NewRun(ctx, &k.NodeKeys, []*Target{{Name: "bob", Dest: remote}}, "", t.TempDir())
	if _, err := run.Snapshot(ctx, source); err == nil {
		t.Fatal("a snapshot over the offer succeeded")
	}
	if err := run.Targets()[0].Err; !errors.Is(err, ErrOverQuota) || !strings.Contains(err.Error(), "over the space offered") {
		t.Fatalf("over quota: %v", err)
	}
	if objs, _ := remote.List(ctx, KindSnapshots); len(objs) != 0 {
		t.Fatalf("snapshots after a refused run: %v", objs)
	}
	// Enough space: it goes, and the friend holds ciphertext only.
	hold.Offer(ctx, a.ID().String(), 64<<20)
	if err := remote.Hello(ctx, k.RestorePub); err != nil {
		t.Fatal(err)
	}
	run = NewRun(ctx, &k.NodeKeys, []*Target{{Name: "bob", Dest: remote}}, "", t.TempDir())
	if _, err := run.Snapshot(ctx, source); err != nil {
		t.Fatal(err)
	}
	used, quota, err := remote.Space(ctx)
	if err != nil || used < 3<<20 || quota != 64<<20 {
		t.Fatalf("space: %d of %d, %v", used, quota, err)
	}
	filepath.Walk(hold.dir, func(p string, fi os.FileInfo, err error) error {
		if fi != nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("PLANTED")) {
				t.Errorf("%s holds a planted string", p)
			}
		}
		return nil
	})
	offers, err := hold.Offers(ctx)
	if err != nil || len(offers) != 1 || offers[0].Used != used || offers[0].Modified.IsZero() {
		t.Fatalf("offers: %+v %v", offers, err)
	}

	// A stranger gets nothing.
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	stranger, err := p2p.New(ctx, p2p.Config{Key: sk, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	connect(t, stranger, b)
	if _, err := NewRemote(stranger, b.ID(), "bob", nil).List(ctx, KindChunks); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("a stranger listed: %v", err)
	}

	// The restore peer, from the code alone, reads it all back but writes nothing.
	keys, _ := DeriveKeys(code)
	rh, err := RestoreHost(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	connect(t, rh, b)
	back := NewRemote(rh, b.ID(), "bob", nil)
	if err := back.Put(ctx, KindChunks, strings.Repeat("a", 64), []byte("x")); err == nil {
		t.Fatal("the restore peer wrote")
	}
	r, err := NewRestorer(ctx, keys, []Named{{Name: "bob", Dest: back}})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, _, err := r.Latest(ctx, func(h Header) bool { return h.Grain == "g1" }, nil, func() (map[string]string, func(), error) {
		return map[string]string{"var": out}, func() { emptyDir(out) }, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f")); !bytes.Equal(got, secret) {
		t.Fatal("restored from the friend, the file differs")
	}

	// Withdrawn mid-way: the next put is refused and the space is freed.
	if err := hold.Withdraw(ctx, a.ID().String()); err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ctx, KindChunks, strings.Repeat("b", 64), []byte("x")); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("put after the offer was withdrawn: %v", err)
	}
	if _, err := os.Stat(filepath.Join(hold.dir, a.ID().String())); !os.IsNotExist(err) {
		t.Fatalf("withdrawn space still there: %v", err)
	}
}

// withdrawAfter is a friend's destination whose owner withdraws the
// offer after n chunks have gone, in the middle of a run.
type withdrawAfter struct {
	Destination
	n        int
	withdraw func()
}

func (w *withdrawAfter) Put(ctx context.Context, kind, name string, b []byte) error {
	if kind == KindChunks {
		if w.n == 0 {
			w.withdraw()
		}
		w.n--
	}
	return w.Destination.Put(ctx, kind, name, b)
}

// A friend withdrawing the offer mid-run: the run fails with the
// friend's reason, nothing it sent is left to pass for a backup when
// space is offered again, and the next run completes and restores.
func TestFriendWithdrawingMidBackup(t *testing.T) {
	ctx := context.Background()
	hosts := p2ptest.NewTestNet(t, 2, nil)
	a, b := hosts[0], hosts[1]
	hold := holderOn(t, b)
	k, code := testKeys(t)
	src := t.TempDir()
	data := randBytes(8 << 20)
	writeFile(t, filepath.Join(src, "f"), data)
	source := Source{Kind: "grain", Grain: GrainMeta{ID: "g1"}, Roots: map[string]string{"var": src}}
	if err := hold.Offer(ctx, a.ID().String(), 64<<20); err != nil {
		t.Fatal(err)
	}
	remote := NewRemote(a, b.ID(), "bob", nil)
	cut := &withdrawAfter{Destination: remote, n: 2, withdraw: func() {
		if err := hold.Withdraw(ctx, a.ID().String()); err != nil {
			t.Error(err)
		}
	}}
	run := NewRun(ctx, &k.NodeKeys, []*Target{{Name: "bob", Dest: cut}}, "", t.TempDir())
	if _, err := run.Snapshot(ctx, source); err == nil {
		t.Fatal("a run whose offer was withdrawn midway succeeded")
	}
	if err := run.Targets()[0].Err; !errors.Is(err, ErrNoOffer) {
		t.Fatalf("the run's error: %v", err)
	}
	if cut.n >= 0 {
		t.Fatalf("the offer was withdrawn before the last chunk only (%d left)", cut.n)
	}

	// A put in flight as the offer ended lands after the delete.
	late, err := hold.repo(a.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Put(ctx, KindSnapshots, snapshotName(time.Now()), []byte("late")); err != nil {
		t.Fatal(err)
	}
	if err := hold.Offer(ctx, a.ID().String(), 64<<20); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{KindSnapshots, KindChunks} {
		if objs, err := remote.List(ctx, kind); err != nil || len(objs) != 0 {
			t.Fatalf("%s after the offer was made again: %v %v", kind, objs, err)
		}
	}
	run = NewRun(ctx, &k.NodeKeys, []*Target{{Name: "bob", Dest: remote}}, "", t.TempDir())
	if _, err := run.Snapshot(ctx, source); err != nil {
		t.Fatal(err)
	}
	keys, _ := DeriveKeys(code)
	r, err := NewRestorer(ctx, keys, []Named{{Name: "bob", Dest: remote}})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, _, err := r.Latest(ctx, func(h Header) bool { return h.Grain == "g1" }, nil, func() (map[string]string, func(), error) {
		return map[string]string{"var": out}, func() { emptyDir(out) }, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f")); !bytes.Equal(got, data) {
		t.Fatal("restored after the run that completed, the file differs")
	}
}
