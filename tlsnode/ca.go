package tlsnode

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of the node's own CA and the certificate it issues, in Config.Dir.
const (
	caCertFile   = "ca.crt"
	caKeyFile    = "ca.key"
	ownCertFile  = "own.crt"
	ownKeyFile   = "own.key"
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 90 * 24 * time.Hour
)

// ownCA is a CA the node made for itself. Its certificate is
// name-constrained (critically) to the node's domain and allows no IP
// addresses, so a device that trusts it trusts nothing else it could sign:
// should its key leak, it could not pass for any other site.
type ownCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// loadCA reads the node's CA from dir, making one the first time. A CA
// made for another domain is an error rather than silently replaced:
// every device that trusts it would have to trust a new one.
func loadCA(dir, domain string) (*ownCA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return makeCA(dir, domain)
	}
	if err != nil {
		return nil, fmt.Errorf("tls: own CA: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: own CA %s: %w", filepath.Join(dir, caCertFile), err)
	}
	key, err := readKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("tls: own CA: %w", err)
	}
	if len(cert.PermittedDNSDomains) != 1 || !strings.EqualFold(cert.PermittedDNSDomains[0], domain) {
		return nil, fmt.Errorf("tls: the node's own CA (%s) is for %v, not %s: move %s and %s away to make a new one (every device that trusts the old one must then trust the new one)",
			dir, cert.PermittedDNSDomains, domain, caCertFile, caKeyFile)
	}
	return &ownCA{cert: cert, key: key}, nil
}

func makeCA(dir, domain string) (*ownCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "erg node CA for " + domain, Organization: []string{"erg"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,

		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{domain},
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tls: make own CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, caCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &ownCA{cert: cert, key: key}, nil
}

// fingerprint is the SHA-256 of the CA certificate as browsers and
// certutil show it: upper-case hex pairs joined by colons.
func (ca *ownCA) fingerprint() string { return Fingerprint(ca.cert.Raw) }

// Fingerprint is the SHA-256 of a DER certificate as browsers show it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// issue makes a certificate for names signed by the CA, with a new key.
func (ca *ownCA) issue(names []string, lifetime time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// caSource serves a wildcard certificate the node's own CA issued, kept
// in Dir and issued again when a third of its life is left.
type caSource struct {
	ca          *ownCA
	dir, domain string
	renewBefore time.Duration
}

func (s *caSource) detail() string {
	return "certificates signed by the node's own CA, which each device must trust once"
}

func (s *caSource) trusted(*tls.Certificate) bool { return false }

func (s *caSource) refresh(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
	if cur == nil {
		// A certificate kept from the last run, if it is still good.
		if c, err := loadPair(filepath.Join(s.dir, ownCertFile), filepath.Join(s.dir, ownKeyFile)); err == nil &&
			covers(c.Leaf, s.domain) == nil && c.Leaf.CheckSignatureFrom(s.ca.cert) == nil {
			cur = c
		}
	}
	if cur != nil && !due(cur.Leaf, s.renewBefore, time.Now()) {
		return cur, nil
	}
	c, err := s.ca.issue([]string{s.domain, "*." + s.domain}, leafLifetime)
	if err != nil {
		return cur, fmt.Errorf("tls: own CA: issue: %w", err)
	}
	if err := savePair(filepath.Join(s.dir, ownCertFile), filepath.Join(s.dir, ownKeyFile), c); err != nil {
		return cur, err
	}
	return c, nil
}

// due reports whether a certificate should be renewed: within renewBefore
// of its expiry (default: the last third of its life).
func due(leaf *x509.Certificate, renewBefore time.Duration, now time.Time) bool {
	if renewBefore <= 0 {
		renewBefore = leaf.NotAfter.Sub(leaf.NotBefore) / 3
	}
	return now.After(leaf.NotAfter.Add(-renewBefore))
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func parseCert(pemBytes []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeKey(path string, key crypto.Signer) error {
	data, err := keyPEM(key)
	if err != nil {
		return err
	}
	return writeFile(path, data, 0o600)
}

// loadPair reads a certificate chain and its key, with the leaf parsed.
func loadPair(certPath, keyPath string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func savePair(certPath, keyPath string, c *tls.Certificate) error {
	if err := writeKey(keyPath, c.PrivateKey.(crypto.Signer)); err != nil {
		return err
	}
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return writeFile(certPath, chain, 0o644)
}

// writeFile replaces path atomically, so a crash never leaves half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}
