package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/miekg/dns"

	"erg/internal/testkit"
	"erg/tlsforward"
	"erg/tlsnode"
	"erg/tlsnode/acmetest"
)

// throughFriend is a browser that trusts only n's CA and whose DNS points
// every name at the friend's web port.
func throughFriend(n *testNode, friendAddr string) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", friendAddr)
			},
			TLSClientConfig: &tls.Config{RootCAs: n.roots()},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// keyBytes are the forms A's TLS private key could be found in: its
// PKCS#8 DER and the bare scalar.
func keyBytes(t *testing.T, n *testNode) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.cfg.DataDir, tlsDir, "own.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{b.Bytes, d, data}
}

// TestRemoteAccessThroughAFriendEndsTLSAtHome: bob's node forwards TLS for
// alice's domain to her node over libp2p: a browser that trusts only
// alice's CA, its DNS pointing at bob, signs in to alice's grain through
// him with alice's certificate. Bob refuses names nobody asked for and a
// second friend's claim on alice's name, stops when his owner says so,
// and never has alice's key on disk.
func TestRemoteAccessThroughAFriendEndsTLSAtHome(t *testing.T) {
	t.Parallel()
	a := startNode(t, func(c *Config) { c.Domain = "alice.test"; c.Name = "alice" })
	b := startNode(t, func(c *Config) { c.Domain = "bob.test"; c.Owner = "bob"; c.Name = "bob" })
	befriend(t, a, b)
	ctx := context.Background()
	bID, _ := peer.Decode(b.NodeID2())
	asked, err := a.forward.Ask(ctx, bID)
	if err != nil || asked.Addr != b.Addr() {
		t.Fatalf("ask bob: %+v %v", asked, err)
	}
	if rs := b.forward.Routes(); len(rs) != 1 || rs[0].Domain != "alice.test" || rs[0].Friend != "alice" {
		t.Fatalf("bob's routes: %+v", rs)
	}

	// A visitor through bob: alice's certificate, alice's pages.
	c := throughFriend(a, b.Addr())
	resp, err := c.Get("https://alice.test/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.TLS.PeerCertificates[0].Equal(a.certs.Certificate().Leaf) {
		t.Fatalf("alice's login page through bob: %d", resp.StatusCode)
	}
	if !strings.Contains(string(body), "Sign in") {
		t.Fatalf("not alice's page: %.200s", body)
	}
	// A grain of alice's, signed in through bob.
	g, err := a.grains.NewGrain(ctx, a.owner(), "echo", "E")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(g.URL)
	resp, err = c.Get("https://" + u.Hostname() + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("grain login through bob: %d", resp.StatusCode)
	}
	resp, err = c.Get("https://" + u.Hostname() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from echo") {
		t.Fatalf("grain through bob: %d %.200s", resp.StatusCode, body)
	}

	// Bob's own names stay bob's; a name nobody asked for gets nothing.
	if _, err := tls.Dial("tcp", b.Addr(), &tls.Config{ServerName: "bob.test", RootCAs: b.roots()}); err != nil {
		t.Fatalf("bob's own HTTPS: %v", err)
	}
	if conn, err := tls.Dial("tcp", b.Addr(), &tls.Config{ServerName: "carol.test", InsecureSkipVerify: true}); err == nil {
		conn.Close()
		t.Fatal("a name nobody asked for was answered")
	}
	// Another friend of bob's cannot claim alice's name.
	m := startNode(t, func(c *Config) { c.Domain = "mallory.test"; c.Owner = "mallory"; c.Name = "mallory" })
	befriend(t, m, b)
	if reply := rawAsk(t, m, bID, "alice.test"); !strings.Contains(reply, "another friend") {
		t.Fatalf("mallory claims alice.test: %s", reply)
	}
	if reply := rawAsk(t, m, bID, "test"); !strings.Contains(reply, "not a domain") {
		t.Fatalf("mallory claims a TLD: %s", reply)
	}
	if reply := rawAsk(t, m, bID, "g-x.bob.test"); !strings.Contains(reply, "overlaps") {
		t.Fatalf("mallory claims bob's own names: %s", reply)
	}

	// The test button: through bob, the handshake ends at alice's node.
	w := a.setUp(t)
	if code, body := w.post("/settings/remote/test", url.Values{"friend": {"bob"}}); code != 200 || !strings.Contains(body, "Remote access works") {
		t.Fatalf("test button: %d %.300s", code, body)
	}
	if _, body := w.get("/settings"); !strings.Contains(body, `data-testid="remote-ok"`) {
		t.Fatal("settings do not show the passed test")
	}

	// Bob's disk never holds alice's key.
	secrets := keyBytes(t, a)
	for _, p := range testkit.FilesHolding(b.cfg.DataDir, secrets) {
		t.Errorf("alice's key is in bob's %s", p)
	}

	// A visitor's connection left open (a browser's keep-alive) is cut
	// when bob's node closes, rather than holding its shutdown.
	held, err := tls.Dial("tcp", b.Addr(), &tls.Config{ServerName: "alice.test", RootCAs: a.roots()})
	if err != nil {
		t.Fatalf("a connection through bob: %v", err)
	}
	defer held.Close()

	// Bob's owner stops forwarding: new connections and alice's asks are
	// refused.
	if !b.forward.Stop("alice.test") {
		t.Fatal("stop")
	}
	if conn, err := tls.Dial("tcp", b.Addr(), &tls.Config{ServerName: "alice.test", RootCAs: a.roots()}); err == nil {
		conn.Close()
		t.Fatal("forwarded after stop")
	}
	if _, err := a.forward.Ask(ctx, bID); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("alice asks again after stop: %v", err)
	}
	closed := make(chan struct{})
	go func() { b.forward.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("bob's forwarder waits on the connections it forwards instead of cutting them")
	}
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a forwarded connection outlived the forwarder's close: %v", err)
	}
}

// NodeID2 is the node's libp2p peer id.
func (n *testNode) NodeID2() string { return n.p2p.host.ID().String() }

// rawAsk asks to is forwarded domain as a node lying about its domain
// would, and returns the answer.
func rawAsk(t *testing.T, from *testNode, to peer.ID, domain string) string {
	t.Helper()
	st, err := from.p2p.host.Libp2p().NewStream(context.Background(), to, tlsforward.AskProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fmt.Fprintf(st, "{\"domain\": %q}\n", domain)
	reply, _ := io.ReadAll(io.LimitReader(st, 4096))
	return string(reply)
}

// Visitors through a friend are told apart by the home node's limits:
// the friend passes on each visitor's address, so one visitor guessing
// passwords is locked out and another through the same friend is not.
func TestVisitorsThroughAFriendAreLimitedApart(t *testing.T) {
	t.Parallel()
	a := startNode(t, func(c *Config) { c.Domain = "alice.test"; c.Name = "alice" })
	b := startNode(t, func(c *Config) { c.Domain = "bob.test"; c.Owner = "bob"; c.Name = "bob" })
	befriend(t, a, b)
	a.setUp(t)
	bID, _ := peer.Decode(b.NodeID2())
	if _, err := a.forward.Ask(context.Background(), bID); err != nil {
		t.Fatal(err)
	}
	login := func(from, password string) int {
		c := throughFriendFrom(a, b.Addr(), from)
		req, _ := http.NewRequest("POST", "https://alice.test/login",
			strings.NewReader(url.Values{"username": {"alice"}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://alice.test")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("sign in from %s through bob: %v", from, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if code := login("127.0.0.2", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d from 127.0.0.2: %d", i+1, code)
		}
	}
	if code := login("127.0.0.2", ownerPassword); code != http.StatusTooManyRequests {
		t.Fatalf("the guessing visitor is not locked out: %d", code)
	}
	if code := login("127.0.0.3", ownerPassword); code != http.StatusSeeOther {
		t.Fatalf("another visitor through the same friend is locked out too: %d", code)
	}
}

// throughFriendFrom is throughFriend for a visitor at local address ip.
func throughFriendFrom(n *testNode, friendAddr, ip string) *http.Client {
	c := throughFriend(n, friendAddr)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", friendAddr)
	}
	return c
}

// Remote access survives restarts on both sides: the forwarding friend
// keeps the names it forwards and its owner's stop; the home node asks
// its friends again by itself.
//
// Not parallel: its nodes restart on their kept libp2p ports, which a
// node another test starts meanwhile could take.
func TestForwardingSurvivesRestarts(t *testing.T) {
	alice := func(dir string) func(*Config) {
		return func(c *Config) { c.Domain = "alice.test"; c.Name = "alice"; keepDir(c, dir) }
	}
	bob := func(dir string) func(*Config) {
		return func(c *Config) {
			c.Domain = "bob.test"
			c.Owner = "bob"
			c.Name = "bob"
			keepDir(c, dir)
		}
	}
	a := startNode(t, alice(""))
	b := startNode(t, bob(""))
	befriend(t, a, b)
	bID, _ := peer.Decode(b.NodeID2())
	if _, err := a.forward.Ask(context.Background(), bID); err != nil {
		t.Fatal(err)
	}
	reachesAlice := func(a, b *testNode) error {
		resp, err := throughFriend(a, b.Addr()).Get("https://alice.test/login")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}

	// Bob's node restarts: it still forwards alice.test.
	b.Close()
	b = startNode(t, bob(b.cfg.DataDir))
	if rs := b.forward.Routes(); len(rs) != 1 || rs[0].Domain != "alice.test" || rs[0].Friend != "alice" {
		t.Fatalf("bob's routes after his restart: %+v", rs)
	}
	if err := reachesAlice(a, b); err != nil {
		t.Fatalf("through bob after his restart: %v", err)
	}

	// Alice's node restarts: it asks bob again without her pressing a
	// button, and takes his forwarded connections once he answers.
	a.Close()
	a = startNode(t, alice(a.cfg.DataDir))
	testkit.Await(t, "alice's node to ask bob again", func() bool {
		as := a.forward.Asked()
		return len(as) == 1 && as[0].Addr == b.Addr() && as[0].Err == ""
	})
	if err := reachesAlice(a, b); err != nil {
		t.Fatalf("through bob after alice's restart: %v", err)
	}

	// Bob's owner stops forwarding, and a restart does not undo it.
	b.forward.Stop("alice.test")
	b.Close()
	b = startNode(t, bob(b.cfg.DataDir))
	if rs := b.forward.Routes(); len(rs) != 1 || !rs[0].Stopped {
		t.Fatalf("bob's stop was lost in a restart: %+v", rs)
	}
	if err := reachesAlice(a, b); err == nil {
		t.Fatal("forwarded after a stop and a restart")
	}
}

// keepDir points c at an earlier node's data dir, if dir is one.
func keepDir(c *Config, dir string) {
	if dir != "" {
		c.DataDir = dir
	}
}

// Asking a friend to forward, on Settings, points the domain's DNS at
// the friend when the node's DNS provider takes RFC 2136 updates.
func TestAskingAFriendPointsTheDNSAtIt(t *testing.T) {
	testkit.SkipShort(t, "runs bind9")
	t.Parallel()
	env := acmetest.Start(t, "alice.test")
	a := startNode(t, func(c *Config) { c.Domain = "alice.test"; c.Name = "alice" })
	b := startNode(t, func(c *Config) {
		c.Domain = "bob.test"
		c.Owner = "bob"
		c.Name = "bob"
		c.TLS.PublicAddr = "192.0.2.44:443" // where visitors reach bob's node
	})
	befriend(t, a, b)
	if err := tlsnode.SaveACME(filepath.Join(a.cfg.DataDir, tlsDir), env.Config()); err != nil {
		t.Fatal(err)
	}
	w := a.setUp(t)
	code, body := w.post("/settings/remote/ask", url.Values{"friend": {"bob"}})
	if code != 200 || !strings.Contains(body, "this node pointed the DNS records of alice.test and *.alice.test there") {
		t.Fatalf("ask bob: %d %.400s", code, body)
	}
	for _, name := range []string{"alice.test.", "g-abc.alice.test."} {
		r, err := dns.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), env.DNS)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.44" {
			t.Fatalf("%s after the ask: %v %v", name, r, err)
		}
	}
}
