package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"erg/internal/browsertest"
)

// trustingBrowser is a headless Chromium whose only added root is the
// node's own CA (in an NSS database under its own HOME, as on a Linux
// desktop), resolving every name to loopback.
func trustingBrowser(t *testing.T, n *testNode) *browser {
	path := chromiumPath(t)
	home := browsertest.TrustingHome(t, "erg node CA", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.certs.CACertificate()}))
	root := browsertest.Start(t, path,
		chromedp.Flag("host-resolver-rules", "MAP * 127.0.0.1"),
		chromedp.Env("HOME="+home))
	return &browser{t: t, root: root, node: n}
}

// mintWithNodeCA signs a certificate for names with the node's CA key, as
// someone who stole it might.
func mintWithNodeCA(t *testing.T, n *testNode, names ...string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(n.cfg.DataDir, tlsDir)
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		t.Fatal("no CA files")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}
}

// TestBrowserTrustsTheNodesOwnCAForItsDomainOnly: a Chromium that trusts
// only the node's CA opens the node and a grain over HTTPS with a valid
// chain, signs in and uses the grain; a certificate signed with the same
// CA key for a name outside the node's domain is refused.
func TestBrowserTrustsTheNodesOwnCAForItsDomainOnly(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Domain = "erg.test" })
	b := trustingBrowser(t, n)
	u := browserOwner(t, b, n)
	if loc := u.location(); !strings.HasPrefix(loc, n.URL()+"/") {
		t.Fatalf("after setup at %s", loc)
	}
	if !eval[bool](u, `window.isSecureContext && location.protocol === "https:"`) {
		t.Fatal("the shell is not a secure HTTPS context")
	}
	// A grain on its own HTTPS origin, in the shell's frame, signed in
	// through its partitioned Secure cookie.
	g, err := n.grains.NewGrain(t.Context(), n.owner(), "echo", "E")
	if err != nil {
		t.Fatal(err)
	}
	u.do("open the grain", chromedp.Navigate(n.URL()+"/grains/"+g.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	// On a real domain the grain is same-site with the shell, so Chrome
	// keeps the frame in the shell's process: read it off the frame tree.
	var frameURL string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && frameURL == "" {
		res, err := chromedp.Call(u.ctx, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.FrameTree.ChildFrames {
			if strings.HasPrefix(c.Frame.URL, "https://g-"+g.ID+".erg.test:") && !strings.Contains(c.Frame.URL, "/_erg/login") {
				frameURL = c.Frame.URL
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if frameURL == "" {
		t.Fatal("the grain's frame did not load over HTTPS")
	}
	// The grain at the top, signed in by the cookie its frame got.
	u.do("the grain's origin", chromedp.Navigate(frameURL))
	f := u
	f.waitJS("the grain's page", `document.readyState === "complete" && document.documentElement.textContent.includes("hello from echo")`)
	if origin := eval[string](f, `location.origin`); !strings.HasPrefix(origin, "https://g-"+g.ID+".erg.test:") {
		t.Fatalf("grain origin %s", origin)
	}
	if got := eval[string](f, `fetch("/write?v=tls", {method: "POST", body: "x"}).then(r => fetch("/read")).then(r => r.text())`); got != "tls" {
		t.Fatalf("the grain's own POST over HTTPS: %q", got)
	}
	// Typing http:// lands on HTTPS.
	_, port, _ := strings.Cut(strings.TrimPrefix(n.URL(), "https://"), ":")
	u.do("plain HTTP", chromedp.Navigate("http://erg.test:"+port+"/grains"))
	if loc := u.location(); loc != n.URL()+"/grains" {
		t.Fatalf("http:// went to %s", loc)
	}

	// A server with certificates minted with the node's CA key: one in
	// the domain (accepted, so the browser does check this CA) and one
	// outside it (refused by the name constraint).
	inside := mintWithNodeCA(t, n, "g-minted.erg.test")
	outside := mintWithNodeCA(t, n, "bank.example")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "bank.example" {
			return &outside, nil
		}
		return &inside, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "minted") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, mport, _ := net.SplitHostPort(ln.Addr().String())

	v := b.newUser()
	v.do("a minted certificate inside the domain", chromedp.Navigate("https://g-minted.erg.test:"+mport+"/"))
	if got := eval[string](v, `document.body.textContent`); got != "minted" {
		t.Fatalf("inside the domain: %q", got)
	}
	ctx, cancel := context.WithTimeout(v.ctx, 15*time.Second)
	defer cancel()
	_, err = chromedp.Run(ctx, chromedp.Navigate("https://bank.example:"+mport+"/"))
	var le *chromedp.LoadError
	if !errors.As(err, &le) || !strings.Contains(le.ErrorText, "ERR_CERT") {
		t.Fatalf("a name outside the constraint: %v", err)
	}
	t.Logf("outside the constraint: %s", le.ErrorText)
}
