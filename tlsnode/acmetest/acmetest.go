// Package acmetest runs the real parts of an ACME DNS-01 flow for tests:
// Pebble (Let's Encrypt's test CA, built from the Go module proxy) and
// bind9 as the zone's authoritative server, taking the challenge records
// as RFC 2136 updates signed with TSIG. Both run on loopback ports, or
// (StartAt) on an address inside a network namespace of the test's.
package acmetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"erg/tlsnode"
)

// PebbleVersion is the Pebble the tests build.
const PebbleVersion = "v2.10.3"

// Env is one Pebble and one bind9 serving Zone.
type Env struct {
	t    testing.TB
	Zone string
	// Directory is Pebble's ACME directory URL; DirectoryRoots verify its
	// HTTPS, and DirectoryRootsFile holds them as PEM (for a process:
	// lego's LEGO_CA_CERTIFICATES).
	Directory          string
	DirectoryRoots     *x509.CertPool
	DirectoryRootsFile string
	// Roots are Pebble's issuing roots: what a browser in the test trusts.
	Roots   *x509.CertPool
	RootPEM []byte
	DNS     string // bind9's address, host:port
	secret  string

	at    Place
	named *exec.Cmd
	dir   string
}

// Place is where StartAt runs bind9 and Pebble: an address in a network
// namespace the test made, how to run a program there and how to reach
// it from the test.
type Place struct {
	Addr    string // both listen here, on their usual ports (53; 14000 and 15000)
	Command func(name string, args ...string) *exec.Cmd
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	// Points is the address the zone and its wildcard answer with until
	// a test updates them; default Addr.
	Points string
}

// loopback is Start's place: the test's own network, on free ports.
func (p Place) loopback() bool { return p.Command == nil }

var (
	buildOnce sync.Once
	pebbleBin string
	buildErr  error
)

// pebble builds Pebble once per test process (go install into a temp
// GOBIN; the module comes from the proxy or the module cache).
func pebble(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "erg-pebble-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+PebbleVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build pebble: %v\n%s", err, out)
			return
		}
		pebbleBin = filepath.Join(dir, "pebble")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pebbleBin
}

// Skip skips the test where bind9 is not installed (.ci/run installs it).
func Skip(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("named"); err != nil {
		if _, err := os.Stat("/usr/sbin/named"); err != nil {
			t.Skip("bind9's named is not installed (apt-get install bind9)")
		}
	}
}

func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs bind9 for zone (zone and *.zone pointing at 127.0.0.1) and
// Pebble validating through it, on loopback. Both stop when the test ends.
func Start(t testing.TB, zone string) *Env {
	t.Helper()
	return StartAt(t, zone, Place{})
}

// StartAt is Start at a place of the test's (Place{} is loopback, on free
// ports).
func StartAt(t testing.TB, zone string, at Place) *Env {
	t.Helper()
	Skip(t)
	bin := pebble(t)
	ports := [5]int{53, 14000, 15000, 5002, 5001} // DNS, ACME, management, Pebble's HTTP-01 and TLS-ALPN-01
	if at.loopback() {
		at = Place{Addr: "127.0.0.1", Command: exec.Command, Dial: (&net.Dialer{}).DialContext}
		ports = [5]int{dnsPort(t), freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")}
	}
	if at.Points == "" {
		at.Points = at.Addr
	}
	e := &Env{t: t, Zone: zone, dir: t.TempDir(), at: at}
	key := make([]byte, 32)
	rand.Read(key)
	e.secret = base64.StdEncoding.EncodeToString(key)
	e.startDNS(ports[0])
	e.startPebble(bin, ports[1:])
	return e
}

// dnsPort is a loopback port free for both UDP and TCP: bind listens on
// both.
func dnsPort(t testing.TB) int {
	var port int
	for range 20 {
		port = freePort(t, "udp")
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			break
		}
	}
	return port
}

func (e *Env) startDNS(port int) {
	t := e.t
	e.DNS = net.JoinHostPort(e.at.Addr, strconv.Itoa(port))
	zoneFile := filepath.Join(e.dir, e.Zone+".zone")
	os.WriteFile(zoneFile, []byte(fmt.Sprintf(`$TTL 5
@ IN SOA ns.%[1]s. admin.%[1]s. 1 60 60 600 5
@ IN NS ns.%[1]s.
ns IN A %[2]s
@ IN A %[3]s
* IN A %[3]s
`, e.Zone, e.at.Addr, e.at.Points)), 0o644)
	conf := filepath.Join(e.dir, "named.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { %[6]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-query { any; };
};
key "erg-acme" { algorithm hmac-sha256; secret "%[3]s"; };
zone "%[4]s" { type master; file "%[5]s"; allow-update { key "erg-acme"; }; };
`, e.dir, port, e.secret, e.Zone, zoneFile, e.at.Addr)), 0o644)
	named := "named"
	if _, err := exec.LookPath(named); err != nil {
		named = "/usr/sbin/named"
	}
	e.named = e.at.Command(named, "-g", "-c", conf)
	e.named.Stdout, e.named.Stderr = logWriter{t, "named"}, logWriter{t, "named"}
	if err := e.named.Start(); err != nil {
		t.Fatalf("start named: %v", err)
	}
	t.Cleanup(e.StopDNS)
	e.await("named", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := e.at.Dial(ctx, "tcp", e.DNS)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// StopDNS stops bind9, so that the next DNS-01 challenge fails.
func (e *Env) StopDNS() {
	if e.named != nil && e.named.Process != nil {
		e.named.Process.Kill()
		e.named.Wait()
		e.named = nil
	}
}

// ports: the ACME directory, management (roots), HTTP-01 and TLS-ALPN-01.
func (e *Env) startPebble(bin string, ports []int) {
	t := e.t
	certFile, keyFile := filepath.Join(e.dir, "pebble.crt"), filepath.Join(e.dir, "pebble.key")
	if err := e.pebbleCert(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "pebble.json")
	listen := func(port int) string { return net.JoinHostPort(e.at.Addr, strconv.Itoa(port)) }
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"pebble": {
	"listenAddress": %q, "managementListenAddress": %q,
	"certificate": %q, "privateKey": %q,
	"httpPort": %d, "tlsPort": %d, "keyAlgorithm": "ecdsa",
	"profiles": {"default": {"description": "default", "validityPeriod": 7776000}}
}}`, listen(ports[0]), listen(ports[1]), certFile, keyFile, ports[2], ports[3])), 0o644)
	cmd := e.at.Command(bin, "-config", cfg, "-dnsserver", e.DNS)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = logWriter{t, "pebble"}, logWriter{t, "pebble"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	host := "localhost"
	if e.at.Addr != "127.0.0.1" {
		host = e.at.Addr
	}
	e.Directory = fmt.Sprintf("https://%s/dir", net.JoinHostPort(host, strconv.Itoa(ports[0])))
	hc := &http.Client{Transport: &http.Transport{
		DialContext:     func(ctx context.Context, _, addr string) (net.Conn, error) { return e.at.Dial(ctx, "tcp", addr) },
		TLSClientConfig: &tls.Config{RootCAs: e.DirectoryRoots},
	}, Timeout: 5 * time.Second}
	e.await("pebble", func() bool {
		resp, err := hc.Get(e.Directory)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	resp, err := hc.Get(fmt.Sprintf("https://%s/roots/0", net.JoinHostPort(host, strconv.Itoa(ports[1]))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e.RootPEM, _ = io.ReadAll(resp.Body)
	b, _ := pem.Decode(e.RootPEM)
	if b == nil {
		t.Fatalf("pebble root: %q", e.RootPEM)
	}
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	e.Roots = x509.NewCertPool()
	e.Roots.AddCert(root)
}

// pebbleCert makes Pebble's own HTTPS certificate, self-signed, for
// localhost and its address; it is DirectoryRoots.
func (e *Env) pebbleCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "pebble"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP(e.at.Addr)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	e.DirectoryRoots = x509.NewCertPool()
	e.DirectoryRoots.AddCert(cert)
	e.DirectoryRootsFile = certFile
	return nil
}

func (e *Env) await(what string, ok func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not come up", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Config is the node's ACME configuration for this environment: the
// dnsupdate (RFC 2136) provider with the TSIG key bind9 takes updates
// signed with.
func (e *Env) Config() tlsnode.ACMEConfig {
	return tlsnode.ACMEConfig{
		Directory: e.Directory,
		Email:     "owner@" + e.Zone,
		Provider:  "dnsupdate",
		Credentials: map[string]string{
			"DNSUPDATE_NAMESERVER":          e.DNS,
			"DNSUPDATE_TSIG_KEY":            "erg-acme",
			"DNSUPDATE_TSIG_SECRET":         e.secret,
			"DNSUPDATE_TSIG_ALGORITHM":      "hmac-sha256.",
			"DNSUPDATE_PROPAGATION_TIMEOUT": "20",
			"DNSUPDATE_POLLING_INTERVAL":    "1",
			"DNSUPDATE_SEQUENCE_INTERVAL":   "1",
		},
		Resolvers:      []string{e.DNS},
		DirectoryRoots: e.DirectoryRoots,
	}
}

type logWriter struct {
	t    testing.TB
	name string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.name + ": " + line)
	}
	return len(p), nil
}
