package tlsnode

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Options are how the web port serves HTTPS (erg run's TLS flags). A domain other than
// localhost gets HTTPS unless InsecureHTTP: from the files when given,
// else ACME when set up (by flags or on the Settings page), else the
// node's own CA.
type Options struct {
	CertFile, KeyFile string
	// ACME, when set, is saved (0600) in the data dir and used from then
	// on; when nil, ACME settings saved earlier are used.
	ACME *ACMEConfig
	// InsecureHTTP serves plain HTTP on a real domain, for a node behind
	// a TLS proxy of its owner's; every start warns of it.
	InsecureHTTP bool
	// HTTPListen is a second, plain-HTTP address (":80") that redirects
	// to HTTPS and serves the page on trusting the node's own CA. The
	// web port itself answers plain HTTP the same way.
	HTTPListen string
	// HTTP2 offers browsers HTTP/2 over TLS beside HTTP/1.1 (ALPN "h2").
	// Off by default; see Manager.TLSConfig for what changes with it.
	HTTP2 bool
	// PublicAddr is host:port where friends' visitors reach this node's
	// web port when it forwards for them (their DNS points there);
	// default the listen address.
	PublicAddr string
	// ACMEResolvers are the DNS servers (host:port) ACME checks its
	// challenge records on; default the system's.
	ACMEResolvers []string

	// For tests: how often to look at the certificate again, how long
	// before expiry to renew, and which roots count as browser-trusted.
	CheckEvery, RenewBefore time.Duration
	Roots                   *x509.CertPool
	ACMEDirectoryRoots      *x509.CertPool // Pebble's HTTPS
}

// LocalDomain reports whether browsers treat the domain as a secure
// context without TLS, as they do localhost and *.localhost.
func LocalDomain(d string) bool { return d == "localhost" || strings.HasSuffix(d, ".localhost") }

// Start builds the certificate manager for a node serving domain, its
// TLS state in dir, or returns nil when the web port serves plain HTTP:
// on localhost, and with InsecureHTTP (which warns).
func Start(ctx context.Context, domain, dir string, t Options, log *slog.Logger) (*Manager, error) {
	wantsTLS := t.CertFile != "" || t.KeyFile != "" || t.ACME != nil
	if LocalDomain(domain) {
		if wantsTLS {
			return nil, errors.New("HTTPS needs a real domain: pass --domain NAME (grains are served on g-<id>.NAME); on localhost browsers need no TLS")
		}
		return nil, nil
	}
	if t.InsecureHTTP {
		if wantsTLS {
			return nil, errors.New("--insecure-http serves plain HTTP: drop it, or drop the certificate flags")
		}
		log.Warn("serving plain HTTP on a real domain (--insecure-http): anyone on the network path can read and change traffic, " +
			"and a grain can plant cookies for the node's pages, unless a TLS proxy of yours sits in front of this port")
		return nil, nil
	}
	acme := t.ACME
	if acme != nil {
		if err := SaveACME(dir, *acme); err != nil {
			return nil, err
		}
	} else if t.CertFile == "" {
		saved, err := LoadACME(dir)
		if err != nil {
			return nil, err
		}
		acme = saved
	}
	return New(ctx, Config{
		Dir: dir, Domain: domain, CertFile: t.CertFile, KeyFile: t.KeyFile, ACME: acme,
		CheckEvery: t.CheckEvery, RenewBefore: t.RenewBefore, Roots: t.Roots,
		DirectoryRoots: t.ACMEDirectoryRoots, Resolvers: t.ACMEResolvers,
		HTTP2: t.HTTP2, Log: log.With("subsystem", "tls"),
	})
}

// WebScheme is the scheme of the web port's URLs and its port, "" when it
// is the scheme's default (https://example.org, not :443).
func WebScheme(certs *Manager, ln net.Listener) (scheme, port string) {
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	scheme = "http"
	if certs != nil {
		scheme = "https"
	}
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	return scheme, port
}
