package tlsnode_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg/tlsnode"
	"erg/tlsnode/acmetest"
)

// TestACMEIssuesRenewsAndKeepsServingWhenRenewalFails runs the whole
// DNS-01 flow against Pebble and bind9: the wildcard is issued through an
// RFC 2136 update, served, renewed, and when the DNS server is gone the
// renewal fails while the old certificate keeps serving.
func TestACMEIssuesRenewsAndKeepsServingWhenRenewalFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble and bind9")
	}
	t.Parallel()
	env := acmetest.Start(t, "example.test")
	dir := t.TempDir()
	acme := env.Config()
	if err := tlsnode.SaveACME(dir, acme); err != nil {
		t.Fatal(err)
	}
	// The credentials are the owner's only.
	if fi, err := os.Stat(filepath.Join(dir, "acme.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("acme.json: %v %v", fi.Mode(), err)
	}
	saved, err := tlsnode.LoadACME(dir)
	if err != nil || saved.Credentials["DNSUPDATE_TSIG_SECRET"] != acme.Credentials["DNSUPDATE_TSIG_SECRET"] {
		t.Fatalf("saved settings: %+v %v", saved, err)
	}

	ctx := context.Background()
	m, err := tlsnode.New(ctx, tlsnode.Config{Dir: dir, Domain: "example.test", ACME: &acme, Roots: env.Roots,
		RenewBefore: 100 * 24 * time.Hour}) // every check finds it due: renewal on demand
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st.Mode != tlsnode.ModeACME || !st.Trusted || st.LastError != "" || st.CAFingerprint == "" {
		t.Fatalf("after the first order: %+v", st)
	}
	first := m.Certificate()
	if _, err := first.Leaf.Verify(x509.VerifyOptions{Roots: env.Roots, DNSName: "g-abc.example.test", Intermediates: pool(first)}); err != nil {
		t.Fatalf("the issued wildcard: %v", err)
	}

	// Served: a client that trusts only Pebble's root gets it.
	addr := serve(t, m)
	if got := handshake(t, addr, "g-k3x.example.test", env.Roots); !got.Equal(first.Leaf) {
		t.Fatal("another certificate served")
	}

	// Renewed: a new order, served from then on.
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	second := m.Certificate()
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed")
	}
	if got := handshake(t, addr, "example.test", env.Roots); !got.Equal(second.Leaf) {
		t.Fatal("the renewed certificate is not served")
	}

	// The DNS server goes away: renewal fails, the old one keeps serving,
	// and Status says why.
	env.StopDNS()
	if err := m.Check(ctx); err == nil {
		t.Fatal("renewed without DNS")
	}
	st = m.Status()
	if m.Certificate() != second || st.LastError == "" || !strings.Contains(st.LastError, "ACME") || st.NotAfter != second.Leaf.NotAfter {
		t.Fatalf("after a failed renewal: %+v", st)
	}
	if got := handshake(t, addr, "g-k3x.example.test", env.Roots); !got.Equal(second.Leaf) {
		t.Fatal("the old certificate is no longer served")
	}

	// A restart serves the certificate kept on disk, without an order.
	m2, err := tlsnode.New(ctx, tlsnode.Config{Dir: dir, Domain: "example.test", ACME: &acme, Roots: env.Roots})
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Certificate().Leaf.Equal(second.Leaf) || m2.Status().LastError != "" {
		t.Fatalf("after a restart: %+v", m2.Status())
	}
	if fi, err := os.Stat(filepath.Join(dir, "acme.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("acme.key: %v", err)
	}
}

// TestACMEFirstOrderFailingServesTheOwnCAMeanwhile: a node whose first
// order fails still starts, serving a certificate of its own CA, and says
// why.
func TestACMEFirstOrderFailingServesTheOwnCAMeanwhile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Pebble and bind9")
	}
	t.Parallel()
	env := acmetest.Start(t, "example.test")
	acme := env.Config()
	acme.Credentials["DNSUPDATE_TSIG_SECRET"] = "d3JvbmcgIHNlY3JldCB3cm9uZyBzZWNyZXQgd3Jvbmc=" // bind refuses the update
	m, err := tlsnode.New(context.Background(), tlsnode.Config{Dir: t.TempDir(), Domain: "example.test", ACME: &acme, Roots: env.Roots})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st.LastError == "" || st.Trusted || m.Certificate() == nil || !strings.HasPrefix(st.Issuer, "erg node CA") {
		t.Fatalf("status %+v", st)
	}
}

func pool(c *tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		p.AddCert(ic)
	}
	return p
}

func serve(t *testing.T, m *tlsnode.Manager) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// handshake connects as a browser trusting only roots would, and returns
// the certificate it was shown.
func handshake(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}
