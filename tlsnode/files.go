package tlsnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// files serves a certificate and key the owner provides (from certbot,
// tailscale cert, their own CA...), read again whenever either file
// changes. A change that does not load (half-written, wrong key, other
// names) keeps the old pair serving.
type files struct {
	cert, key, domain string
	roots             *x509.CertPool

	stamp string // size and mtime of both files when last loaded
}

func (f *files) detail() string { return f.cert + " and " + f.key }

func (f *files) refresh(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
	stamp, err := stampOf(f.cert, f.key)
	if err != nil {
		return cur, fmt.Errorf("tls: %w", err)
	}
	if cur != nil && stamp == f.stamp {
		return cur, nil
	}
	c, err := loadPair(f.cert, f.key)
	if err != nil {
		return cur, fmt.Errorf("tls: %s, %s: %w", f.cert, f.key, err)
	}
	if err := covers(c.Leaf, f.domain); err != nil {
		return cur, fmt.Errorf("tls: %s: %w", f.cert, err)
	}
	if time.Now().After(c.Leaf.NotAfter) {
		return cur, fmt.Errorf("tls: %s expired on %s", f.cert, c.Leaf.NotAfter.Format(time.DateOnly))
	}
	f.stamp = stamp
	return c, nil
}

func stampOf(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d/", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// trusted reports whether the chain in the files verifies against the
// system's roots, as a browser's would.
func (f *files) trusted(c *tls.Certificate) bool {
	return verifies(c, f.roots, f.domain)
}

func verifies(c *tls.Certificate, roots *x509.CertPool, domain string) bool {
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: domain, Roots: roots, Intermediates: inter})
	return err == nil
}
