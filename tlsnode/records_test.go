package tlsnode_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"erg/tlsnode"
	"erg/tlsnode/acmetest"
)

// The node points its domain and wildcard at a friend's address through
// the same RFC 2136 server its ACME challenges use, replacing what was
// there; a wrong key changes nothing; another provider says it can't.
func TestSetAddressRecordsThroughDNSUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bind9")
	}
	t.Parallel()
	env := acmetest.Start(t, "example.test")
	dir := t.TempDir()
	cfg := env.Config()
	if err := tlsnode.SaveACME(dir, cfg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A name below the zone: the zone is found by walking up.
	m, err := tlsnode.New(ctx, tlsnode.Config{Dir: dir, Domain: "alice.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(name string) []string {
		q := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, err := dns.Exchange(q, env.DNS)
		if err != nil {
			t.Fatalf("look up %s: %v", name, err)
		}
		var ips []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		slices.Sort(ips)
		return ips
	}
	for _, ip := range []string{"192.0.2.7", "198.51.100.9"} {
		if err := m.SetAddressRecords(ctx, netip.MustParseAddr(ip)); err != nil {
			t.Fatalf("set %s: %v", ip, err)
		}
		for _, name := range []string{"alice.example.test", "g-abc.alice.example.test"} {
			if got := lookup(name); !slices.Equal(got, []string{ip}) {
				t.Fatalf("%s is %v, want only %s", name, got, ip)
			}
		}
	}

	// The wrong TSIG secret: refused, and the records stay.
	bad := cfg
	bad.Credentials = maps(cfg.Credentials, "DNSUPDATE_TSIG_SECRET", "c2VjcmV0IG5vYm9keSBrbm93cw==")
	badDir := t.TempDir()
	if err := tlsnode.SaveACME(badDir, bad); err != nil {
		t.Fatal(err)
	}
	mb, err := tlsnode.New(ctx, tlsnode.Config{Dir: badDir, Domain: "alice.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.SetAddressRecords(ctx, netip.MustParseAddr("203.0.113.1")); err == nil {
		t.Fatal("an update signed with the wrong key was taken")
	}
	if got := lookup("alice.example.test"); !slices.Equal(got, []string{"198.51.100.9"}) {
		t.Fatalf("a refused update changed the records: %v", got)
	}

	// No ACME setup, or a provider without address records: say so.
	mn, err := tlsnode.New(ctx, tlsnode.Config{Dir: t.TempDir(), Domain: "alice.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.SetAddressRecords(ctx, netip.MustParseAddr("192.0.2.7")); !errors.Is(err, tlsnode.ErrCannotSetRecords) {
		t.Fatalf("without dnsupdate: %v", err)
	}
}

// maps is m with k set to v, m itself unchanged.
func maps(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}
