package tlsnode

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/providers/dns/cloudflare"
	"github.com/go-acme/lego/v5/providers/dns/digitalocean"
	"github.com/go-acme/lego/v5/providers/dns/dnsupdate"
	"github.com/go-acme/lego/v5/providers/dns/duckdns"
	"github.com/go-acme/lego/v5/providers/dns/gandiv5"
	"github.com/go-acme/lego/v5/providers/dns/hetzner"
	"github.com/go-acme/lego/v5/providers/dns/httpreq"
	"github.com/go-acme/lego/v5/providers/dns/pdns"
	"github.com/go-acme/lego/v5/providers/dns/porkbun"
	"github.com/go-acme/lego/v5/registration"
)

// legoDNS guards lego's process-wide DNS client (dns01.SetDefaultClient).
var legoDNS sync.Mutex

// ACMEConfig is how the node gets its wildcard certificate from an ACME
// CA through DNS-01: a DNS provider lego supports and its credentials,
// given as the provider's settings (the names lego documents for it,
// e.g. CLOUDFLARE_DNS_API_TOKEN).
type ACMEConfig struct {
	Directory   string            `json:"directory"` // default Let's Encrypt
	Email       string            `json:"email"`
	Provider    string            `json:"provider"`
	Credentials map[string]string `json:"credentials"`
	// Resolvers are the DNS servers asked whether the challenge record is
	// visible yet (host:port); default the system's. Setting them also
	// skips asking the zone's own name servers, which a test's DNS server
	// on a loopback port cannot be reached as.
	Resolvers []string `json:"resolvers,omitempty"`

	// DirectoryRoots verify the ACME directory's HTTPS (Pebble's test
	// CA); default the system's roots. Not saved.
	DirectoryRoots *x509.CertPool `json:"-"`
}

// acmeFile keeps the ACME settings, the provider's credentials and the
// account key, 0600 in Config.Dir.
const (
	acmeFile     = "acme.json"
	acmeCertFile = "acme.crt"
	acmeKeyFile  = "acme.key"
)

// Providers are the DNS providers the node can set challenge records
// with, by lego's names, and the settings each needs.
var Providers = map[string]struct {
	New      func() (challenge.Provider, error)
	Settings []string
}{
	"dnsupdate":    {func() (challenge.Provider, error) { return dnsupdate.NewDNSProvider() }, []string{"DNSUPDATE_NAMESERVER", "DNSUPDATE_TSIG_KEY", "DNSUPDATE_TSIG_SECRET", "DNSUPDATE_TSIG_ALGORITHM"}},
	"cloudflare":   {func() (challenge.Provider, error) { return cloudflare.NewDNSProvider() }, []string{"CLOUDFLARE_DNS_API_TOKEN"}},
	"digitalocean": {func() (challenge.Provider, error) { return digitalocean.NewDNSProvider() }, []string{"DO_AUTH_TOKEN"}},
	"duckdns":      {func() (challenge.Provider, error) { return duckdns.NewDNSProvider() }, []string{"DUCKDNS_TOKEN"}},
	"gandiv5":      {func() (challenge.Provider, error) { return gandiv5.NewDNSProvider() }, []string{"GANDIV5_PERSONAL_ACCESS_TOKEN"}},
	"hetzner":      {func() (challenge.Provider, error) { return hetzner.NewDNSProvider() }, []string{"HETZNER_API_TOKEN"}},
	"httpreq":      {func() (challenge.Provider, error) { return httpreq.NewDNSProvider() }, []string{"HTTPREQ_ENDPOINT", "HTTPREQ_USERNAME", "HTTPREQ_PASSWORD"}},
	"pdns":         {func() (challenge.Provider, error) { return pdns.NewDNSProvider() }, []string{"PDNS_API_URL", "PDNS_API_KEY"}},
	"porkbun":      {func() (challenge.Provider, error) { return porkbun.NewDNSProvider() }, []string{"PORKBUN_API_KEY", "PORKBUN_SECRET_API_KEY"}},
}

// ProviderNames lists Providers in order, for --help and the Settings page.
func ProviderNames() []string {
	var names []string
	for n := range Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// envMu serialises building providers: lego's read their settings from
// the environment, so the credentials are set there only while one is
// built, and the environment is put back after.
var envMu sync.Mutex

func newProvider(name string, creds map[string]string) (challenge.Provider, error) {
	p, ok := Providers[name]
	if !ok {
		return nil, fmt.Errorf("tls: unknown DNS provider %q; known: %s", name, strings.Join(ProviderNames(), ", "))
	}
	envMu.Lock()
	defer envMu.Unlock()
	old := map[string]*string{}
	for k, v := range creds {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	defer func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}()
	prov, err := p.New()
	if err != nil {
		return nil, fmt.Errorf("tls: DNS provider %s: %w (settings it takes: %s)", name, err, strings.Join(p.Settings, ", "))
	}
	return prov, nil
}

// acmeState is acme.json.
type acmeState struct {
	ACMEConfig
	AccountKey string                `json:"account_key"` // PEM
	Account    *acme.ExtendedAccount `json:"account,omitempty"`
}

type acmeSource struct {
	cfg         ACMEConfig
	dir, domain string
	renewBefore time.Duration
	roots       *x509.CertPool
	fallback    *caSource // serves until the first certificate is issued
	provider    challenge.Provider

	mu    sync.Mutex // one order at a time
	state acmeState
}

// SaveACME writes the ACME settings (with the credentials) to dir, 0600,
// keeping the account key of an earlier run.
func SaveACME(dir string, cfg ACMEConfig) error {
	if _, err := newProvider(cfg.Provider, cfg.Credentials); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	st, err := readACME(dir)
	if err != nil {
		return err
	}
	if st.Provider != cfg.Provider || st.Directory != cfg.Directory {
		st.Account = nil // another CA, or a new setup: register again
	}
	st.ACMEConfig = cfg
	return writeACME(dir, st)
}

// LoadACME reads the ACME settings saved in dir; nil if there are none.
func LoadACME(dir string) (*ACMEConfig, error) {
	st, err := readACME(dir)
	if err != nil || st.Provider == "" {
		return nil, err
	}
	return &st.ACMEConfig, nil
}

func readACME(dir string) (acmeState, error) {
	var st acmeState
	data, err := os.ReadFile(filepath.Join(dir, acmeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("tls: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("tls: %s: %w", filepath.Join(dir, acmeFile), err)
	}
	return st, nil
}

func writeACME(dir string, st acmeState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, acmeFile), data, 0o600)
}

func newACME(cfg Config, ca *ownCA) (*acmeSource, error) {
	a := *cfg.ACME
	if a.DirectoryRoots == nil {
		a.DirectoryRoots = cfg.DirectoryRoots
	}
	if len(a.Resolvers) == 0 {
		a.Resolvers = cfg.Resolvers
	}
	if a.Directory == "" {
		a.Directory = lego.DirectoryURLLetsEncrypt
	}
	prov, err := newProvider(a.Provider, a.Credentials)
	if err != nil {
		return nil, err
	}
	st, err := readACME(cfg.Dir)
	if err != nil {
		return nil, err
	}
	// lego logs through a logger of its own, to stdout unless told:
	// into the node's log instead.
	legolog.SetDefault(cfg.Log.With("subsystem", "acme"))
	return &acmeSource{cfg: a, dir: cfg.Dir, domain: cfg.Domain, renewBefore: cfg.RenewBefore, roots: cfg.Roots,
		fallback: &caSource{ca: ca, dir: cfg.Dir, domain: cfg.Domain}, provider: prov, state: st}, nil
}

func (s *acmeSource) detail() string {
	return fmt.Sprintf("ACME DNS-01 from %s through %s", s.cfg.Directory, s.cfg.Provider)
}

func (s *acmeSource) trusted(c *tls.Certificate) bool { return verifies(c, s.roots, s.domain) }

func (s *acmeSource) refresh(ctx context.Context, cur *tls.Certificate) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur == nil {
		if c, err := loadPair(filepath.Join(s.dir, acmeCertFile), filepath.Join(s.dir, acmeKeyFile)); err == nil && covers(c.Leaf, s.domain) == nil {
			cur = c
		}
	}
	fromACME := cur != nil && s.fallback.ca.cert.Subject.String() != cur.Leaf.Issuer.String()
	if fromACME && !due(cur.Leaf, s.renewBefore, time.Now()) {
		return cur, nil
	}
	c, err := s.obtain(ctx)
	if err != nil {
		if cur == nil {
			// Serve something while the first order fails: browsers
			// will warn, and Settings says why.
			fb, ferr := s.fallback.refresh(ctx, nil)
			if ferr == nil {
				return fb, err
			}
		}
		return cur, err
	}
	return c, nil
}

// obtain registers the account if needed and orders the wildcard.
func (s *acmeSource) obtain(ctx context.Context) (*tls.Certificate, error) {
	key, err := s.accountKey()
	if err != nil {
		return nil, err
	}
	user := &acmeUser{email: s.cfg.Email, key: key, reg: s.state.Account}
	lc := lego.NewConfig(user)
	lc.CADirURL = s.cfg.Directory
	lc.Certificate.Timeout = 2 * time.Minute
	if s.cfg.DirectoryRoots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: s.cfg.DirectoryRoots}
		lc.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	client, err := lego.NewClient(lc)
	if err != nil {
		return nil, fmt.Errorf("tls: ACME %s: %w", s.cfg.Directory, err)
	}
	var opts []dns01.ChallengeOption
	if len(s.cfg.Resolvers) > 0 {
		// The DNS client lego checks propagation with is one per process:
		// an order with resolvers of its own holds it to the end, or
		// another manager in the process (tests run several) would point
		// it at other servers mid-order.
		legoDNS.Lock()
		defer legoDNS.Unlock()
		dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: s.cfg.Resolvers, Timeout: 5 * time.Second}))
		opts = append(opts, dns01.DisableAuthoritativeNssPropagationRequirement())
	}
	if err := client.Challenge.SetDNS01Provider(s.provider, opts...); err != nil {
		return nil, fmt.Errorf("tls: ACME: %w", err)
	}
	if user.reg == nil {
		reg, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("tls: ACME: register with %s: %w", s.cfg.Directory, err)
		}
		s.state.Account = reg
		if err := writeACME(s.dir, s.state); err != nil {
			return nil, err
		}
	}
	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{
		Domains: []string{s.domain, "*." + s.domain}, Bundle: true, KeyType: certcrypto.EC256,
	})
	if err != nil {
		return nil, fmt.Errorf("tls: ACME order for %s and *.%s through %s: %w", s.domain, s.domain, s.cfg.Provider, err)
	}
	c, err := tls.X509KeyPair(res.Certificate, res.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("tls: ACME gave a certificate that does not load: %w", err)
	}
	if err := covers(c.Leaf, s.domain); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(s.dir, acmeKeyFile), res.PrivateKey, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(s.dir, acmeCertFile), res.Certificate, 0o644); err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *acmeSource) accountKey() (crypto.Signer, error) {
	if s.state.AccountKey != "" {
		k, err := parseKeyPEM([]byte(s.state.AccountKey))
		if err != nil {
			return nil, fmt.Errorf("tls: ACME account key in %s: %w", acmeFile, err)
		}
		return k, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pemKey, err := keyPEM(k)
	if err != nil {
		return nil, err
	}
	s.state.ACMEConfig = s.cfg
	s.state.AccountKey = string(pemKey)
	s.state.Account = nil
	return k, writeACME(s.dir, s.state)
}

type acmeUser struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *acmeUser) GetEmail() string                       { return u.email }
func (u *acmeUser) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *acmeUser) GetPrivateKey() crypto.Signer           { return u.key }
