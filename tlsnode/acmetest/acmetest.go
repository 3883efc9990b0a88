// Package acmetest runs the real parts of an ACME DNS-01 flow for tests:
// Pebble (Let's Encrypt's test CA, built from the Go module proxy) and
// bind9 as the zone's authoritative server, taking the challenge records
// as RFC 2136 updates signed with TSIG. Both run on loopback ports.
package acmetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
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
	// HTTPS.
	Directory      string
	DirectoryRoots *x509.CertPool
	// Roots are Pebble's issuing roots: what a browser in the test trusts.
	Roots   *x509.CertPool
	RootPEM []byte
	DNS     string // bind9's address, host:port
	secret  string

	named *exec.Cmd
	dir   string
}

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
// Pebble validating through it. Both stop when the test ends.
func Start(t testing.TB, zone string) *Env {
	t.Helper()
	Skip(t)
	bin := pebble(t)
	e := &Env{t: t, Zone: zone, dir: t.TempDir()}
	key := make([]byte, 32)
	rand.Read(key)
	e.secret = base64.StdEncoding.EncodeToString(key)
	e.startDNS()
	e.startPebble(bin)
	return e
}

func (e *Env) startDNS() {
	t := e.t
	// A UDP and TCP port both free: bind listens on both.
	var port int
	for range 20 {
		port = freePort(t, "udp")
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			break
		}
	}
	e.DNS = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	zoneFile := filepath.Join(e.dir, e.Zone+".zone")
	os.WriteFile(zoneFile, []byte(fmt.Sprintf(`$TTL 5
@ IN SOA ns.%[1]s. admin.%[1]s. 1 60 60 600 5
@ IN NS ns.%[1]s.
ns IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
`, e.Zone)), 0o644)
	conf := filepath.Join(e.dir, "named.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-query { any; };
};
key "erg-acme" { algorithm hmac-sha256; secret "%[3]s"; };
zone "%[4]s" { type master; file "%[5]s"; allow-update { key "erg-acme"; }; };
`, e.dir, port, e.secret, e.Zone, zoneFile)), 0o644)
	named := "named"
	if _, err := exec.LookPath(named); err != nil {
		named = "/usr/sbin/named"
	}
	e.named = exec.Command(named, "-g", "-c", conf)
	e.named.Stdout, e.named.Stderr = logWriter{t, "named"}, logWriter{t, "named"}
	if err := e.named.Start(); err != nil {
		t.Fatalf("start named: %v", err)
	}
	t.Cleanup(e.StopDNS)
	e.await("named", func() bool {
		c, err := net.DialTimeout("tcp", e.DNS, time.Second)
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

func (e *Env) startPebble(bin string) {
	t := e.t
	// Pebble's own HTTPS certificate, for localhost.
	ca, err := tlsnode.New(context.Background(), tlsnode.Config{Dir: filepath.Join(e.dir, "pebble-tls"), Domain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(ca.CACertificate())
	e.DirectoryRoots = x509.NewCertPool()
	e.DirectoryRoots.AddCert(caCert)

	port, mgmt := freePort(t, "tcp"), freePort(t, "tcp")
	cfg := filepath.Join(e.dir, "pebble.json")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"pebble": {
	"listenAddress": "127.0.0.1:%d", "managementListenAddress": "127.0.0.1:%d",
	"certificate": "%s", "privateKey": "%s",
	"httpPort": %d, "tlsPort": %d, "keyAlgorithm": "ecdsa",
	"profiles": {"default": {"description": "default", "validityPeriod": 7776000}}
}}`, port, mgmt, filepath.Join(e.dir, "pebble-tls", "own.crt"), filepath.Join(e.dir, "pebble-tls", "own.key"),
		freePort(t, "tcp"), freePort(t, "tcp"))), 0o644)
	cmd := exec.Command(bin, "-config", cfg, "-dnsserver", e.DNS)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = logWriter{t, "pebble"}, logWriter{t, "pebble"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	e.Directory = fmt.Sprintf("https://localhost:%d/dir", port)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.DirectoryRoots}}, Timeout: 5 * time.Second}
	e.await("pebble", func() bool {
		resp, err := hc.Get(e.Directory)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	resp, err := hc.Get(fmt.Sprintf("https://localhost:%d/roots/0", mgmt))
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
