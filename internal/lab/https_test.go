package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"erg/internal/browsertest"
	"erg/internal/testkit"
	"erg/nodetest"
	"erg/tlsnode/acmetest"
)

// Remote access through a friend, across the lab's internet: A, behind
// its NAT, holds a certificate for alice.test from an ACME CA on the
// internet; R, its friend with a public address, forwards alice.test's
// HTTPS to it over libp2p without ending the TLS.
const (
	servicesAddr  = "1.2.0.53" // DNS (bind9, alice.test's zone) and ACME (Pebble), on the internet: in inet
	cafeAddr      = "1.2.0.30" // a network on the internet a visitor's browser is on
	aliceDomain   = "alice.test"
	alicePassword = "correct horse battery"
)

// httpsWorld is the lab with what remote access needs: bind9 serving
// alice.test's zone and Pebble on the internet, R serving HTTPS on 443
// (its own rita.test, and forwarding for friends), A behind its NAT with
// a certificate from Pebble by DNS-01, R and A friends, and a café on the
// internet whose DNS is bind9.
type httpsWorld struct {
	*Internet
	env  *nodetest.Env
	acme *acmetest.Env
	r, a *nodetest.Node
	cafe *NS
}

func newHTTPSWorld(t *testing.T) *httpsWorld {
	t.Helper()
	in := NewInternet(t)
	in.Inet.Must("ip", "addr", "add", servicesAddr+"/24", "dev", "br0")
	w := &httpsWorld{Internet: in, cafe: in.Join("cafe", cafeAddr)}
	// alice.test's names point at A's router until A points them
	// elsewhere (its router takes no connections).
	w.acme = acmetest.StartAt(t, aliceDomain, acmetest.Place{
		Addr: servicesAddr, Command: in.Inet.Command, Dial: in.Inet.DialContext, Points: in.A.WAN})
	w.cafe.Resolver(servicesAddr)
	w.env = nodetest.New(t)
	w.r = w.env.Process("rnode", nodetest.Netns(in.R.Full, in.R.DialContext), nodetest.Owner("rita"), nodetest.NoApps(),
		nodetest.Args("--domain", "rita.test", "--listen", ":443", "--public-addr", RAddr+":443"))
	// A's ACME client trusts Pebble's HTTPS through lego's own setting
	// for a CA outside the system's roots.
	w.a = w.env.Process("anode", nodetest.Netns(in.A.Host.Full, in.A.Host.DialContext), nodetest.Owner("alice"),
		nodetest.Environ("LEGO_CA_CERTIFICATES="+w.acme.DirectoryRootsFile),
		nodetest.Args(append(acmeFlags(w.acme), "--domain", aliceDomain, "--listen", ":443")...))
	w.env.Befriend(w.r, w.a)
	awaitOnline(t, 60*time.Second, w.a, "rnode")
	return w
}

// acmeFlags are erg run's flags for the ACME setup of e.
func acmeFlags(e *acmetest.Env) []string {
	c := e.Config()
	args := []string{"--acme-dns", c.Provider, "--acme-email", c.Email, "--acme-directory", c.Directory}
	for _, r := range c.Resolvers {
		args = append(args, "--acme-resolver", r)
	}
	for k, v := range c.Credentials {
		args = append(args, "--acme-setting", k+"="+v)
	}
	return args
}

// aliceCert is A's certificate and the forms its private key could be
// found in (the PEM file, the key's DER, the bare scalar), from A's data
// dir, where its ACME client put them.
func (w *httpsWorld) aliceCert(t *testing.T) (*x509.Certificate, [][]byte) {
	t.Helper()
	dir := filepath.Join(w.a.DataDir, "tls")
	certPEM, err := os.ReadFile(filepath.Join(dir, "acme.crt"))
	if err != nil {
		t.Fatalf("A has no certificate from ACME: %v", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "acme.key"))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pair.PrivateKey.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(keyPEM)
	return pair.Leaf, [][]byte{keyPEM, b.Bytes, d}
}

// handshake makes a TLS connection from ns to addr for name, trusting
// roots (nil: trusting anything), and returns the certificate it got.
func handshake(ns *NS, addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil})
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// lookup asks bind9, from ns, for name's A record.
func lookup(t *testing.T, ns *NS, name string) string {
	t.Helper()
	var r *dns.Msg
	err := ns.inside(func() (err error) {
		r, err = dns.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), servicesAddr+":53")
		return err
	})
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("%s from %s: %v %v", name, ns.Name, r, err)
	}
	return r.Answer[0].(*dns.A).A.String()
}

// browser is a Chromium in ns that trusts Pebble's root beside its own,
// and resolves names with rules ("MAP ..."), else the namespace's DNS.
func (w *httpsWorld) browser(t *testing.T, ns *NS, who string, rules string) *tab {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{chromedp.Env("HOME=" + browsertest.TrustingHome(t, "Pebble", w.acme.RootPEM))}
	if rules != "" {
		opts = append(opts, chromedp.Flag("host-resolver-rules", rules))
	}
	return &tab{t: t, who: who, ctx: ns.Chromium(t, opts...), node: w.a}
}

// homeBrowser is alice's browser at home, where her network's DNS
// answers alice.test with A's address on the LAN.
func (w *httpsWorld) homeBrowser(t *testing.T) *tab {
	t.Helper()
	return w.browser(t, w.A.Host, "alice at home",
		"MAP "+aliceDomain+" "+w.A.LAN+", MAP *."+aliceDomain+" "+w.A.LAN)
}

// askR is alice setting up her node at home and asking R, on Settings,
// to forward alice.test; A points the zone's records at R itself.
func (w *httpsWorld) askR(t *testing.T, home *tab) {
	t.Helper()
	home.do("set up the owner",
		chromedp.Navigate(w.a.SetupURL()),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password]`), alicePassword),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password2]`), alicePassword),
		chromedp.Click(chromedp.CSS(`[data-testid=setup-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)))
	home.do("ask R to forward",
		chromedp.Navigate("https://"+aliceDomain+"/settings"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=remote-friend]`), "rnode"),
		chromedp.Click(chromedp.CSS(`[data-testid=remote-ask]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice], [data-testid=error]`)))
	want := "rnode forwards alice.test to this node from " + RAddr + ":443: this node pointed the DNS records of alice.test and *.alice.test there."
	if got := home.text(`[data-testid=notice], [data-testid=error]`); !strings.Contains(got, want) {
		t.Fatalf("asking R on Settings: %q, want %q", got, want)
	}
	home.do("test remote access",
		// The ask's notice goes, so that the one awaited is the test's.
		chromedp.Evaluate[chromedp.Void](`document.querySelector("[data-testid=notice]").remove()`),
		chromedp.Click(chromedp.CSS(`[data-testid=remote-test]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice], [data-testid=error]`)))
	if got := home.text(`[data-testid=notice], [data-testid=error]`); !strings.Contains(got, "Remote access works") {
		t.Fatalf("the test button: %q", got)
	}
}

// text is the text of the first element sel matches.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	got, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("%s: text of %s: %v", tb.who, sel, err)
	}
	return got
}

// grainFrame waits for the shell's frame to show grain id signed in, and
// returns its URL.
func (tb *tab) grainFrame(id string) string {
	tb.t.Helper()
	var url string
	nodetest.AwaitFor(tb.t, 30*time.Second, tb.who+"'s frame of grain "+id, func() bool {
		res, err := chromedp.Call(tb.ctx, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			return false
		}
		for _, c := range res.FrameTree.ChildFrames {
			if strings.HasPrefix(c.Frame.URL, "https://g-"+id+"."+aliceDomain+"/") && !strings.Contains(c.Frame.URL, "/_erg/login") {
				url = c.Frame.URL
			}
		}
		return url != ""
	})
	return url
}

// TestHTTPSThroughAFriend is issue 14's lab scenario: alice, away from
// home in a café on the internet, opens her note on A (behind its NAT)
// at https://g-<id>.alice.test in a Chromium that trusts Pebble's root:
// the café's DNS (bind9) answers with R's address, R forwards the TLS
// unread to A over libp2p, and A ends it with the certificate it got
// from Pebble by DNS-01. She signs in and edits; her browser at home
// sees the edit live. R refuses a name nobody asked it to forward, and
// neither its memory nor its disk ever held A's private key.
func TestHTTPSThroughAFriend(t *testing.T) {
	skipUnlessLab(t)
	w := newHTTPSWorld(t)
	// The lab stays sealed with the café and the internet's servers in it.
	for _, ns := range []*NS{w.Inet, w.cafe, w.R, w.A.Host} {
		if err := ns.Unreachable(hostAddr(t)); err != nil {
			t.Error(err)
		}
	}

	// A got its certificate from Pebble, through the DNS on the internet.
	leaf, secrets := w.aliceCert(t)
	if got, err := handshake(w.A.Host, "127.0.0.1:443", "g-x."+aliceDomain, w.acme.Roots); err != nil || !got.Equal(leaf) {
		t.Fatalf("A's HTTPS at home: %v", err)
	}
	if got := lookup(t, w.cafe, aliceDomain); got != w.A.WAN {
		t.Fatalf("before the ask alice.test is %s, want A's router %s", got, w.A.WAN)
	}

	home := w.homeBrowser(t)
	w.askR(t, home)
	for _, name := range []string{aliceDomain, "g-x." + aliceDomain} {
		if got := lookup(t, w.cafe, name); got != RAddr {
			t.Fatalf("after the ask %s is %s, want R's %s", name, got, RAddr)
		}
	}

	g := w.a.NewGrain("notes", "Plans from the café")
	og, err := w.a.Client().OpenGrain(context.Background(), g.ID)
	if err != nil {
		t.Fatal(err)
	}
	athome := &tab{t: t, who: "alice's note at home", ctx: newTab(t, home.ctx), node: w.a}
	athome.do("open the note at home", chromedp.Navigate(og.URL))
	athome.wait("the note at home to connect", noteConnected, 30*time.Second)

	// In the café: R's address for every name of alice's, A's certificate.
	// R's own name (told the browser by hand: the café's DNS does not
	// know it) has a certificate from R's own CA, which the browser does
	// not trust: it checks what it is shown.
	cafe := w.browser(t, w.cafe, "alice in the café", "MAP rita.test "+RAddr)
	ctx, cancel := context.WithTimeout(cafe.ctx, 15*time.Second)
	_, err = chromedp.Run(ctx, chromedp.Navigate("https://rita.test/"))
	cancel()
	if le := (*chromedp.LoadError)(nil); !errors.As(err, &le) || !strings.Contains(le.ErrorText, "ERR_CERT_AUTHORITY_INVALID") {
		t.Fatalf("the café's browser on R's own name, whose CA it does not trust: %v", err)
	}
	cafe.do("sign in through R",
		chromedp.Navigate("https://"+aliceDomain+"/login"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-username]`), "alice"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-password]`), alicePassword),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)))
	cafe.do("open the note in the shell", chromedp.Navigate("https://"+aliceDomain+"/grains/"+g.ID),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	cafe.do("the note on its own origin", chromedp.Navigate(cafe.grainFrame(g.ID)))
	cafe.wait("the note through R to connect", noteWritable, 60*time.Second)
	if ok, err := chromedp.Run(cafe.ctx, chromedp.Evaluate[bool](`window.isSecureContext && location.origin === "https://g-`+g.ID+`.alice.test"`)); err != nil || !ok {
		t.Fatalf("the café's note is not a secure context on https://g-%s.alice.test: %v", g.ID, err)
	}
	cafe.typeAtEnd("Hello from the café")
	athome.wait("alice's browser at home to see the café's edit live", noteIs("Hello from the café"), 30*time.Second)

	// What the café reaches at R is A's certificate; a name nobody asked
	// R to forward gets no TLS at all.
	if got, err := handshake(w.cafe, RAddr+":443", "g-"+g.ID+"."+aliceDomain, w.acme.Roots); err != nil || !got.Equal(leaf) {
		t.Fatalf("the café's handshake through R did not end at A with A's certificate: %v", err)
	}
	for _, name := range []string{"carol.test", "g-x.carol.test"} {
		if got, err := handshake(w.cafe, RAddr+":443", name, nil); err == nil {
			t.Errorf("R answered %s, which nobody asked it to forward, with %v", name, got.DNSNames)
		}
	}

	// A's key is in A's memory (so the check can find it), never in R's
	// memory or on R's disk.
	if !testkit.ProcessHolds(t, w.a.Pid(), secrets) {
		t.Fatal("the check does not find A's key even in A's own process")
	}
	if testkit.ProcessHolds(t, w.r.Pid(), secrets) {
		t.Error("R's process memory holds A's TLS key")
	}
	for _, p := range testkit.FilesHolding(w.r.DataDir, secrets) {
		t.Errorf("A's key is in R's %s", p)
	}
}

// newTab is another tab of the browser whose context is ctx, open until
// the test ends. (A tab lives as long as the context of the first action
// run in it, so this runs one on the tab's own.)
func newTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("a new tab: %v", err)
	}
	return tab
}
