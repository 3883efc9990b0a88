package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"erg/tlsnode"
)

// cookieNamed finds a Set-Cookie of an answer by name.
func cookieNamed(h http.Header, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestOwnCAServesHTTPSForTheNodeAndItsGrains(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.Domain = "erg.test" })
	if !strings.HasPrefix(n.URL(), "https://erg.test:") {
		t.Fatalf("URL %s", n.URL())
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(n.URL(), "https://"), ":")

	// Plain HTTP on the same port: the redirect, or the trust page.
	plain := n.webClient(t)
	for from, to := range map[string]string{
		"http://erg.test:" + port + "/grains?x=1":    n.URL() + "/grains?x=1",
		"http://g-abc.erg.test:" + port + "/notes":   "https://g-abc.erg.test:" + port + "/notes",
		"http://127.0.0.1:" + port + "/login":        n.URL() + "/login",
		"http://api.erg.test:" + port + "/x":         "https://api.erg.test:" + port + "/x",
		"http://erg.test:" + port + "/static/erg.js": n.URL() + "/static/erg.js",
	} {
		req, _ := http.NewRequest("GET", from, nil)
		code, _, hdr := plain.do(req)
		if code != http.StatusPermanentRedirect || hdr.Get("Location") != to {
			t.Errorf("%s: %d to %q, want %s", from, code, hdr.Get("Location"), to)
		}
	}
	req, _ := http.NewRequest("POST", "http://erg.test:"+port+"/login", strings.NewReader("username=alice"))
	if code, _, hdr := plain.do(req); code != http.StatusPermanentRedirect || hdr.Get("Location") != n.URL()+"/login" {
		t.Errorf("plain POST: %d %s", code, hdr.Get("Location"))
	}
	if code, _ := plain.get("http://evil.test:" + port + "/"); code != http.StatusMisdirectedRequest {
		t.Errorf("another name over plain HTTP: %d", code)
	}
	fp := n.certs.Status().CAFingerprint
	for _, path := range []string{"/", "/_erg/ca"} {
		code, body := plain.get("http://erg.test:" + port + path)
		if code != 200 || !strings.Contains(body, fp) || !strings.Contains(body, `href="`+n.URL()+`/"`) {
			t.Errorf("trust page %s: %d %.200s", path, code, body)
		}
	}
	code, der := plain.get("http://erg.test:" + port + "/_erg/ca.crt")
	if ca, err := x509.ParseCertificate([]byte(der)); code != 200 || err != nil || tlsnode.Fingerprint(ca.Raw) != fp {
		t.Fatalf("CA download: %d %v", code, err)
	}

	// Over HTTPS: the owner signs in with a __Host- cookie, and a grain
	// opens on its own HTTPS origin.
	w := n.setUp(t)
	_, _, hdr := w.do(mustReq(t, "GET", w.url("/grains")))
	if hdr.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS with the node's own CA")
	}
	w2 := n.webClient(t)
	req = mustReq(t, "POST", n.URL()+"/login")
	req.Body = io.NopCloser(strings.NewReader(url.Values{"username": {"alice"}, "password": {ownerPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, _, hdr = w2.do(req)
	c := cookieNamed(hdr, "__Host-erg_session")
	if code != http.StatusSeeOther || c == nil || !c.Secure || c.Domain != "" || c.Path != "/" {
		t.Fatalf("sign-in over HTTPS: %d, cookie %+v", code, c)
	}
	id, origin := n.newGrain("notes")
	if origin != "https://g-"+id+".erg.test:"+port {
		t.Fatalf("grain origin %s", origin)
	}
	if code, _ := n.get(origin + "/"); code != 200 {
		t.Fatalf("grain over HTTPS: %d", code)
	}
	if code, _ := n.get(strings.Replace(origin, "https://", "http://", 1) + "/"); code != 200 {
		t.Fatalf("grain over plain HTTP, redirected: %d", code)
	}
	if strings.Contains(w.csrf, " ") || w.csrf == "" {
		t.Fatal("no session")
	}
	code, body := w.get("/settings")
	if code != 200 || !strings.Contains(body, fp) || !strings.Contains(body, "own CA") {
		t.Fatalf("settings: %d", code)
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestTrustedCertificateFilesTurnHSTSOn(t *testing.T) {
	t.Parallel()
	// A CA the test's clients (the "browsers") trust, and its wildcard.
	dir := t.TempDir()
	issuer, err := tlsnode.New(context.Background(), tlsnode.Config{Dir: dir, Domain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(issuer.CACertificate())
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	n := startNode(t, func(c *Config) {
		c.Domain = "example.org"
		c.TLS = TLSConfig{CertFile: filepath.Join(dir, "own.crt"), KeyFile: filepath.Join(dir, "own.key"), Roots: roots}
	})
	if st := n.certs.Status(); st.Mode != tlsnode.ModeFiles || !st.Trusted {
		t.Fatalf("status %+v", st)
	}
	w := n.setUp(t)
	_, _, hdr := w.do(mustReq(t, "GET", w.url("/grains")))
	if hdr.Get("Strict-Transport-Security") != "max-age=31536000; includeSubDomains" {
		t.Fatalf("HSTS %q", hdr.Get("Strict-Transport-Security"))
	}
	_, origin := n.newGrain("notes")
	resp, err := n.http.Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("grain: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP never gets HSTS (browsers ignore it there anyway) and
	// the files' own CA page does not exist.
	plain := n.webClient(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(n.URL(), "https://"), ":")
	code, _, hdr := plain.do(mustReq(t, "GET", "http://example.org:"+port+"/_erg/ca"))
	if code != http.StatusPermanentRedirect || hdr.Get("Strict-Transport-Security") != "" {
		t.Fatalf("plain HTTP with files: %d %v", code, hdr)
	}
}

func TestInsecureHTTPServesPlainHTTPAndWarns(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	n := startNode(t, func(c *Config) {
		c.Domain = "erg.test"
		c.TLS.InsecureHTTP = true
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if n.certs != nil || !strings.HasPrefix(n.URL(), "http://erg.test:") {
		t.Fatalf("URL %s", n.URL())
	}
	if !strings.Contains(logs.String(), "--insecure-http") || !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("no warning: %s", logs.String())
	}
	w := n.webClient(t)
	req := mustReq(t, "POST", n.URL()+"/login")
	req.Body = io.NopCloser(strings.NewReader(url.Values{"username": {"nobody"}, "password": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, _, _ := w.do(req); code == http.StatusPermanentRedirect {
		t.Fatal("redirected to HTTPS")
	}
	n.setUp(t)
	w = n.webClient(t)
	req = mustReq(t, "POST", n.URL()+"/login")
	req.Body = io.NopCloser(strings.NewReader(url.Values{"username": {"alice"}, "password": {ownerPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, _, hdr := w.do(req)
	if c := cookieNamed(hdr, "erg_session"); c == nil || c.Secure {
		t.Fatalf("cookie over plain HTTP: %+v", c)
	}
}

func TestTLSFlagsAreCheckedAtStart(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]Config{
		"files on localhost":      {Domain: "localhost", TLS: TLSConfig{CertFile: "a", KeyFile: "b"}},
		"files and insecure-http": {Domain: "erg.test", TLS: TLSConfig{CertFile: "a", KeyFile: "b", InsecureHTTP: true}},
		"a cert without key":      {Domain: "erg.test", TLS: TLSConfig{CertFile: "a"}},
		"missing files":           {Domain: "erg.test", TLS: TLSConfig{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}},
		"unknown DNS provider":    {Domain: "erg.test", TLS: TLSConfig{ACME: &tlsnode.ACMEConfig{Provider: "nosuch"}}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.DataDir = filepath.Join(t.TempDir(), "data")
			tc.Listen = "127.0.0.1:0"
			if n, err := Start(context.Background(), tc); err == nil {
				n.Close()
				t.Fatal("started")
			}
		})
	}
}
