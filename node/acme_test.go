package node

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"erg/internal/testkit"
	"erg/tlsnode/acmetest"
)

// TestACMESetUpOnTheSettingsPage: a node on its own CA is switched to ACME
// from the Settings page (Pebble and bind9 behind it), serves the issued
// wildcard with HSTS, and when a renewal fails the page says why while
// the certificate keeps serving.
func TestACMESetUpOnTheSettingsPage(t *testing.T) {
	t.Parallel()
	testkit.SkipShort(t, "runs Pebble and bind9")
	env := acmetest.Start(t, "example.test")
	n := startNode(t, func(c *Config) {
		c.Domain = "example.test"
		c.TLS.Roots, c.TLS.ACMEDirectoryRoots, c.TLS.ACMEResolvers = env.Roots, env.DirectoryRoots, []string{env.DNS}
		c.TLS.RenewBefore = 100 * 24 * time.Hour // every check finds it due, so "Check now" renews
	})
	w := n.setUp(t)
	acme := env.Config()
	var lines []string
	for k, v := range acme.Credentials {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines)
	if code, body := w.post("/settings/tls/acme", url.Values{"provider": {"dnsupdate"}, "email": {acme.Email},
		"directory": {acme.Directory}, "settings": {strings.Join(lines, "\n")}}); code != 200 || !strings.Contains(body, "ordering") {
		t.Fatalf("set up ACME: %d %.300s", code, body)
	}
	testkit.AwaitFor(t, 90*time.Second, "the ACME certificate", func() bool { return n.certs.Status().Trusted })
	if fi, err := os.Stat(filepath.Join(n.cfg.DataDir, tlsDir, "acme.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("acme.json: %v", err)
	}
	// A client that trusts only Pebble's root gets the wildcard, with HSTS.
	w.c.Transport.(*httpTransport).TLSClientConfig.RootCAs = env.Roots
	_, _, hdr := w.do(mustReq(t, "GET", w.url("/settings")))
	if hdr.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS with the ACME certificate")
	}
	served := leafOf(t, n, "g-abc.example.test", env)
	if served.Issuer.CommonName == "" || strings.HasPrefix(served.Issuer.CommonName, "erg node CA") {
		t.Fatalf("served %v from %s", served.DNSNames, served.Issuer.CommonName)
	}
	code, body := w.get("/settings")
	if code != 200 || !strings.Contains(body, "ACME") || strings.Contains(body, `data-testid="tls-error"`) || strings.Contains(body, env.Config().Credentials["DNSUPDATE_TSIG_SECRET"]) {
		t.Fatalf("settings after the order: %d", code)
	}

	// The DNS server goes away; "Check now" renews, which fails.
	env.StopDNS()
	if code, _ := w.post("/settings/tls/check", nil); code != 200 {
		t.Fatalf("check now: %d", code)
	}
	testkit.AwaitFor(t, 90*time.Second, "the failed renewal", func() bool { return n.certs.Status().LastError != "" })
	code, body = w.get("/settings")
	if code != 200 || !strings.Contains(body, `data-testid="tls-error"`) {
		t.Fatalf("settings after a failed renewal: %d", code)
	}
	if again := leafOf(t, n, "example.test", env); !again.Equal(served) {
		t.Fatal("a failed renewal changed the certificate served")
	}
}

type httpTransport = http.Transport

func leafOf(t *testing.T, n *testNode, name string, env *acmetest.Env) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.Addr(), &tls.Config{ServerName: name, RootCAs: env.Roots})
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}
