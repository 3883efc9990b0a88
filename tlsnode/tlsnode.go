// Package tlsnode gives a node with a real domain its HTTPS: one wildcard
// certificate for <domain> and every grain's g-<id>.<domain>, from files
// the owner provides (reloaded when they change), from a CA of the node's
// own that is name-constrained to its domain, or from ACME DNS-01. It keeps
// the certificate current (renewing before expiry, keeping the old one
// while a renewal fails and saying why), and splits one port into its TLS
// and plain-HTTP connections.
package tlsnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Mode is where the certificate comes from.
type Mode string

const (
	ModeFiles Mode = "files"  // --tls-cert and --tls-key
	ModeCA    Mode = "own CA" // the node's own name-constrained CA
	ModeACME  Mode = "ACME"   // ACME DNS-01
)

// Config says where the node's certificate comes from.
type Config struct {
	Dir    string // where the CA, issued certificates and ACME state live (made 0700)
	Domain string // the certificate covers Domain and *.Domain

	// Files mode: both set.
	CertFile, KeyFile string

	// ACME mode: set.
	ACME *ACMEConfig

	// CheckEvery is how often the certificate is looked at again (files
	// changed, renewal due); default 10s for files, 1h otherwise.
	CheckEvery time.Duration
	// RenewBefore renews a certificate this long before it expires;
	// default a third of its lifetime.
	RenewBefore time.Duration
	// Roots decide whether a certificate is browser-trusted (which turns
	// HSTS on); default the system's roots.
	Roots *x509.CertPool
	// DirectoryRoots verify an ACME directory's HTTPS when its ACMEConfig
	// names none (tests: Pebble's); default the system's roots.
	DirectoryRoots *x509.CertPool
	// Resolvers are the DNS servers that ACME checks the challenge record
	// on when its ACMEConfig names none.
	Resolvers []string
	// HTTP2 offers HTTP/2 in TLSConfig's ALPN beside HTTP/1.1.
	HTTP2 bool

	Log *slog.Logger
}

// Status is what the Settings page and the log say about the certificate.
type Status struct {
	Mode     Mode
	Detail   string // e.g. the ACME provider, or the files' paths
	Names    []string
	Issuer   string
	NotAfter time.Time
	// Trusted means a browser trusts the certificate without being told
	// to (a public CA): only then is HSTS sent.
	Trusted bool
	// CAFingerprint is the SHA-256 of the node's own CA certificate, for
	// people to compare when they install it; "" when there is none.
	CAFingerprint string
	Renewed       time.Time // when the current certificate was loaded or issued
	LastError     string    // the last failure to load or renew, "" after a success
	LastErrorAt   time.Time
	HTTP2         bool // TLSConfig offers HTTP/2 (Config.HTTP2)
}

// source is one place certificates come from.
type source interface {
	// refresh returns the certificate to serve: cur when nothing changed
	// or nothing is due, a new one when it was reloaded or renewed. cur is
	// nil at start.
	refresh(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error)
	// trusted reports whether browsers trust what it issues.
	trusted(c *tls.Certificate) bool
	detail() string
}

// Manager holds the node's certificate and keeps it current.
type Manager struct {
	cfg  Config
	mode Mode
	src  source
	log  *slog.Logger
	ca   *ownCA // the node's own CA, when it has one (own CA mode, and ACME until its first certificate)

	mu     sync.Mutex
	cert   *tls.Certificate
	status Status
	kick   chan struct{}
}

// New loads or issues the first certificate. A source that cannot give one
// at all is an error; ACME without a certificate yet serves one from the
// node's own CA until the first is issued.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Domain == "" {
		return nil, errors.New("tls: no domain")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Log, kick: make(chan struct{}, 1)}
	var err error
	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("tls: --tls-cert and --tls-key go together")
		}
		if cfg.ACME != nil {
			return nil, errors.New("tls: choose certificate files or ACME, not both")
		}
		m.mode, m.src = ModeFiles, &files{cert: cfg.CertFile, key: cfg.KeyFile, domain: cfg.Domain, roots: cfg.Roots}
	case cfg.ACME != nil:
		if m.ca, err = loadCA(cfg.Dir, cfg.Domain); err != nil {
			return nil, err
		}
		a, err := newACME(cfg, m.ca)
		if err != nil {
			return nil, err
		}
		m.mode, m.src = ModeACME, a
	default:
		if m.ca, err = loadCA(cfg.Dir, cfg.Domain); err != nil {
			return nil, err
		}
		m.mode, m.src = ModeCA, &caSource{ca: m.ca, dir: cfg.Dir, domain: cfg.Domain, renewBefore: cfg.RenewBefore}
	}
	m.status = Status{Mode: m.mode, Detail: m.src.detail()}
	if m.ca != nil {
		m.status.CAFingerprint = m.ca.fingerprint()
	}
	if err := m.Check(ctx); err != nil && m.Certificate() == nil {
		return nil, err
	}
	return m, nil
}

// Check loads or renews the certificate now if it changed or is due. On
// failure the certificate served so far stays, and the error is kept for
// Status.
func (m *Manager) Check(ctx context.Context) error {
	m.mu.Lock()
	cur, src := m.cert, m.src
	m.mu.Unlock()
	next, err := src.refresh(ctx, cur)
	m.mu.Lock()
	defer m.mu.Unlock()
	if src != m.src {
		return nil // switched meanwhile (UseACME); the next check is the new source's
	}
	if next != cur && next != nil {
		// A new certificate, or (ACME before its first) a stand-in.
		m.cert = next
		leaf := next.Leaf
		m.status.Names, m.status.NotAfter, m.status.Issuer = leaf.DNSNames, leaf.NotAfter, leaf.Issuer.CommonName
		m.status.Trusted = src.trusted(next)
		m.status.Renewed = time.Now()
		m.log.Info("TLS certificate", "mode", m.mode, "names", leaf.DNSNames, "issuer", leaf.Issuer.CommonName,
			"expires", leaf.NotAfter.Format(time.DateOnly), "browser-trusted", m.status.Trusted)
	}
	if err != nil {
		if m.status.LastError != err.Error() {
			m.log.Error("TLS certificate", "mode", m.mode, "err", err, "serving", describe(m.cert))
		}
		m.status.LastError, m.status.LastErrorAt = err.Error(), time.Now()
		return err
	}
	m.status.LastError = ""
	return nil
}

func describe(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return "nothing"
	}
	return fmt.Sprintf("%v from %s until %s", c.Leaf.DNSNames, c.Leaf.Issuer.CommonName, c.Leaf.NotAfter.Format(time.DateOnly))
}

// Run checks the certificate every CheckEvery until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	every := m.cfg.CheckEvery
	if every <= 0 {
		every = time.Hour
		if m.mode == ModeFiles {
			every = 10 * time.Second
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		m.Check(ctx)
	}
}

// Kick asks Run to check now (the Settings page's "renew now").
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Certificate is the certificate served now.
func (m *Manager) Certificate() *tls.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert
}

// Status says which certificate is served, from where, and the last
// failure to renew it.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Names = append([]string(nil), s.Names...)
	s.HTTP2 = m.cfg.HTTP2
	return s
}

// CACertificate is the node's own CA certificate in DER while the
// certificate served is one it issued; nil otherwise.
func (m *Manager) CACertificate() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ca == nil || m.cert == nil || m.cert.Leaf.Issuer.String() != m.ca.cert.Subject.String() {
		return nil
	}
	return m.ca.cert.Raw
}

// UseACME switches to ACME with cfg (from the Settings page): the settings
// are saved, 0600, and the first order runs on Run's next turn, the
// certificate served so far serving until it succeeds.
func (m *Manager) UseACME(cfg ACMEConfig) error {
	m.mu.Lock()
	mode := m.mode
	m.mu.Unlock()
	if mode == ModeFiles {
		return errors.New("the node serves the certificate files given with --tls-cert and --tls-key: restart it without them to use ACME")
	}
	if cfg.Provider == "" {
		return errors.New("choose a DNS provider")
	}
	if err := SaveACME(m.cfg.Dir, cfg); err != nil {
		return err
	}
	c := m.cfg
	c.ACME = &cfg
	a, err := newACME(c, m.ca)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.mode, m.src = ModeACME, a
	m.status.Mode, m.status.Detail, m.status.LastError = ModeACME, a.detail(), ""
	m.mu.Unlock()
	m.Kick()
	return nil
}

// SavedACME is the ACME setup saved in the data dir, credentials and
// all; nil if there is none.
func (m *Manager) SavedACME() *ACMEConfig {
	c, err := LoadACME(m.cfg.Dir)
	if err != nil {
		return nil
	}
	return c
}

// ACME is the ACME setup in use, without its credentials' values; nil
// when the node does not use ACME.
func (m *Manager) ACME() *ACMEConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.src.(*acmeSource)
	if !ok {
		return nil
	}
	c := a.cfg
	c.Credentials = map[string]string{}
	for k := range a.cfg.Credentials {
		c.Credentials[k] = ""
	}
	return &c
}

// MaxStreams bounds the requests one HTTP/2 connection to the web port
// carries at once (net/http's default is 250). The caps on the web port
// count connections, which bound HTTP/1.1's requests in flight one for
// one; over HTTP/2 a client's bound is its connections times this. 32 is
// more than a page's assets ask for at once (a browser queues the rest).
const MaxStreams = 32

// TLSConfig is the server configuration for the web port. Session tickets
// stay on (resumed handshakes are much cheaper); their keys rotate in
// memory as crypto/tls does.
//
// HTTP/1.1 only unless Config.HTTP2. With it, a browser that offers h2
// gets HTTP/2, and websockets still come on HTTP/1.1 connections of
// their own: net/http's HTTP/2 server does not announce extended
// CONNECT (RFC 8441), which is how a browser would carry one over
// HTTP/2. What changes is the web port's caps: they count connections,
// and one HTTP/2 connection carries many requests at once (the server
// bounds them per connection: MaxStreams).
func (m *Manager) TLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if m.cfg.HTTP2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := m.Certificate(); c != nil {
				return c, nil
			}
			return nil, errors.New("no certificate yet")
		},
	}
}

// covers checks that a certificate is for the domain and its grains.
func covers(leaf *x509.Certificate, domain string) error {
	for _, name := range []string{domain, "g-0." + domain} {
		if err := leaf.VerifyHostname(name); err != nil {
			return fmt.Errorf("the certificate is for %v, which does not cover %s and *.%s", leaf.DNSNames, domain, domain)
		}
	}
	return nil
}
