package tlsnode

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
)

func TestOwnCAIssuesAWildcardWithinItsDomainOnly(t *testing.T) {
	dir := t.TempDir()
	m, err := New(context.Background(), Config{Dir: dir, Domain: "erg.home.arpa"})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st.Mode != ModeCA || st.Trusted || st.CAFingerprint == "" {
		t.Fatalf("status %+v", st)
	}
	ca, err := x509.ParseCertificate(m.CACertificate())
	if err != nil {
		t.Fatal(err)
	}
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains) != 1 || ca.PermittedDNSDomains[0] != "erg.home.arpa" || len(ca.ExcludedIPRanges) != 2 {
		t.Fatalf("CA constraints: %v critical=%v excluded IPs %v", ca.PermittedDNSDomains, ca.PermittedDNSDomainsCritical, ca.ExcludedIPRanges)
	}
	if Fingerprint(ca.Raw) != st.CAFingerprint {
		t.Fatal("fingerprint is not the CA certificate's")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	leaf := m.Certificate().Leaf
	for _, name := range []string{"erg.home.arpa", "g-k3x9.erg.home.arpa"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := leaf.VerifyHostname("a.b.erg.home.arpa"); err == nil {
		t.Error("the wildcard covers two labels")
	}

	// The CA's key signing another name: refused by the constraint.
	key, err := readKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	evil, err := (&ownCA{cert: ca, key: key}).issue([]string{"bank.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = evil.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "bank.example"})
	if _, ok := err.(x509.CertificateInvalidError); !ok || err.(x509.CertificateInvalidError).Reason != x509.CANotAuthorizedForThisName {
		t.Fatalf("a name outside the constraint: %v", err)
	}

	// The key files are the owner's only.
	for _, f := range []string{caKeyFile, ownKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi.Mode(), err)
		}
	}

	// The next start keeps the CA and the certificate.
	m2, err := New(context.Background(), Config{Dir: dir, Domain: "erg.home.arpa"})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Status().CAFingerprint != st.CAFingerprint || !m2.Certificate().Leaf.Equal(leaf) {
		t.Fatal("a restart made a new CA or certificate")
	}
	// A CA made for another domain is not silently replaced.
	if _, err := New(context.Background(), Config{Dir: dir, Domain: "other.arpa"}); err == nil || !strings.Contains(err.Error(), "not other.arpa") {
		t.Fatalf("CA of another domain: %v", err)
	}
}

func TestOwnCARenewsWhenDue(t *testing.T) {
	dir := t.TempDir()
	m, err := New(context.Background(), Config{Dir: dir, Domain: "erg.test"})
	if err != nil {
		t.Fatal(err)
	}
	first := m.Certificate()
	m.Check(context.Background())
	if m.Certificate() != first {
		t.Fatal("renewed a certificate that is not due")
	}
	m.src.(*caSource).renewBefore = leafLifetime + time.Hour // due now
	m.Check(context.Background())
	if m.Certificate() == first || m.Certificate().Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed when due")
	}
}

// testCA is a CA for certificates the tests hand the node as files.
func testCA(t *testing.T, domain string) (*ownCA, *x509.CertPool) {
	t.Helper()
	ca, err := makeCA(t.TempDir(), domain)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return ca, pool
}

func writePair(t *testing.T, ca *ownCA, dir string, names ...string) {
	t.Helper()
	c, err := ca.issue(names, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := savePair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), c); err != nil {
		t.Fatal(err)
	}
}

func TestFilesAreReloadedWhenTheyChange(t *testing.T) {
	ca, roots := testCA(t, "example.org")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, ca, dir, "example.org", "*.example.org")
	m, err := New(context.Background(), Config{Domain: "example.org", CertFile: certPath, KeyFile: keyPath, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	first := m.Certificate()
	if st := m.Status(); st.Mode != ModeFiles || !st.Trusted {
		t.Fatalf("status %+v", st)
	}

	// Nothing changed: the same certificate.
	if m.Check(context.Background()); m.Certificate() != first {
		t.Fatal("reloaded unchanged files")
	}
	// A new pair is served after the next check.
	time.Sleep(10 * time.Millisecond) // a new mtime
	writePair(t, ca, dir, "example.org", "*.example.org")
	if err := m.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := m.Certificate()
	if second == first || second.Leaf.Equal(first.Leaf) {
		t.Fatal("the new files were not loaded")
	}

	// A broken write keeps the old pair, and says why.
	os.WriteFile(certPath, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o644)
	if err := m.Check(context.Background()); err == nil {
		t.Fatal("a broken certificate loaded")
	}
	if m.Certificate() != second || m.Status().LastError == "" {
		t.Fatalf("after a broken write: serving %v, status %+v", m.Certificate() == second, m.Status())
	}
	// So does a pair for other names.
	writePair(t, ca, dir, "example.org")
	if err := m.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "does not cover") {
		t.Fatalf("a certificate without the wildcard: %v", err)
	}
	if m.Certificate() != second {
		t.Fatal("a certificate without the wildcard replaced the good one")
	}
	// Fixed: served, and the error is gone.
	writePair(t, ca, dir, "example.org", "*.example.org")
	if err := m.Check(context.Background()); err != nil || m.Certificate() == second || m.Status().LastError != "" {
		t.Fatalf("after the fix: %v, %+v", err, m.Status())
	}

	// Not trusted by the system: no HSTS.
	m2, err := New(context.Background(), Config{Domain: "example.org", CertFile: certPath, KeyFile: keyPath, Roots: x509.NewCertPool()})
	if err != nil || m2.Status().Trusted {
		t.Fatalf("untrusted files: %v %+v", err, m2.Status())
	}
	// Files that never loaded are an error at start.
	if _, err := New(context.Background(), Config{Domain: "example.org", CertFile: certPath + ".missing", KeyFile: keyPath}); err == nil {
		t.Fatal("missing files started")
	}
	if _, err := New(context.Background(), Config{Domain: "example.org", CertFile: certPath}); err == nil {
		t.Fatal("a certificate without its key started")
	}
}

func TestSplitServesTLSAndPlainHTTPOnOnePort(t *testing.T) {
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Domain: "erg.test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSplit(ln, time.Second)
	defer s.Close()
	serve := func(l net.Listener, body string) {
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	}
	serve(tls.NewListener(s.TLS, m.TLSConfig()), "tls")
	serve(s.Plain, "plain")

	ca, _ := x509.ParseCertificate(m.CACertificate())
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	}
	c := &http.Client{Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for url, want := range map[string]string{"https://erg.test/": "tls", "http://erg.test/": "plain", "https://g-abc.erg.test/": "tls"} {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("%s: %q", url, b)
		}
	}
	// A client that sends nothing is dropped after the peek timeout
	// without holding up others.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if resp, err := c.Get("https://erg.test/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent client was answered")
	}
}

// readFromConn is a connection whose ReadFrom is counted.
type readFromConn struct {
	net.Conn
	readFrom int
}

func (c *readFromConn) ReadFrom(r io.Reader) (int64, error) {
	c.readFrom++
	return io.Copy(io.Discard, r)
}

// A PrefixConn reads its prefix first, says what of it is left, and
// passes a ReadFrom on to the connection under it (a server's splice).
func TestPrefixConnReadsItsPrefixFirstAndPassesReadFromOn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.WriteString(b, "rest")
	inner := &readFromConn{Conn: a}
	pc := NewPrefixConn(inner, []byte("GET "))
	buf := make([]byte, 3)
	if n, _ := pc.Read(buf); string(buf[:n]) != "GET" || string(pc.Pending()) != " " {
		t.Fatalf("first read %q, pending %q", buf[:n], pc.Pending())
	}
	got, _ := io.ReadAll(io.LimitReader(pc, 5))
	if string(got) != " rest" || len(pc.Pending()) != 0 {
		t.Errorf("then %q, pending %q", got, pc.Pending())
	}
	if n, err := pc.ReadFrom(strings.NewReader("answer")); n != 6 || err != nil || inner.readFrom != 1 {
		t.Errorf("ReadFrom: %d, %v; the connection's own called %d times", n, err, inner.readFrom)
	}
}
