package tlsnode

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrCannotSetRecords says the node's DNS provider is not one it can set
// address records with: the owner sets them by hand.
var ErrCannotSetRecords = errors.New("this node can set address records only through an RFC 2136 (dnsupdate) DNS provider")

// recordTTL is the TTL of the address records the node sets: short, as
// they follow whichever friend forwards for the node.
const recordTTL = 300

// SetAddressRecords points the node's domain and its wildcard at ip (an
// A or AAAA record, replacing what the names had of that type), through
// the DNS provider the ACME setup uses. Only RFC 2136 updates signed with
// TSIG are supported (lego's providers set only challenge TXT records);
// with another provider, or none, it returns ErrCannotSetRecords.
func (m *Manager) SetAddressRecords(ctx context.Context, ip netip.Addr) error {
	cfg := m.SavedACME()
	if cfg == nil || cfg.Provider != "dnsupdate" {
		return ErrCannotSetRecords
	}
	c := cfg.Credentials
	server, key, secret := c["DNSUPDATE_NAMESERVER"], c["DNSUPDATE_TSIG_KEY"], c["DNSUPDATE_TSIG_SECRET"]
	if server == "" || key == "" || secret == "" {
		return fmt.Errorf("%w: the dnsupdate settings lack a nameserver or TSIG key", ErrCannotSetRecords)
	}
	if !strings.Contains(server, ":") {
		server += ":53"
	}
	alg := dns.Fqdn(orString(c["DNSUPDATE_TSIG_ALGORITHM"], dns.HmacSHA256))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	client := &dns.Client{Net: "tcp", TsigSecret: map[string]string{dns.Fqdn(key): secret}}
	name := dns.Fqdn(m.cfg.Domain)
	zone, err := findZone(ctx, client, server, name)
	if err != nil {
		return err
	}
	rtype, rr := dns.TypeA, func(n string) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: recordTTL}, A: ip.AsSlice()}
	}
	if ip.Is6() && !ip.Is4In6() {
		rtype, rr = dns.TypeAAAA, func(n string) dns.RR {
			return &dns.AAAA{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: recordTTL}, AAAA: ip.AsSlice()}
		}
	} else {
		ip = ip.Unmap()
	}
	msg := new(dns.Msg).SetUpdate(zone)
	for _, n := range []string{name, "*." + name} {
		msg.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: n, Rrtype: rtype, Class: dns.ClassINET}}})
		msg.Insert([]dns.RR{rr(n)})
	}
	msg.SetTsig(dns.Fqdn(key), alg, 300, time.Now().Unix())
	reply, _, err := client.ExchangeContext(ctx, msg, server)
	if err != nil {
		return fmt.Errorf("DNS update at %s: %w", server, err)
	}
	if reply.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("DNS update at %s: the server answered %s", server, dns.RcodeToString[reply.Rcode])
	}
	m.log.Info("DNS records set", "names", []string{name, "*." + name}, "to", ip.String(), "server", server)
	return nil
}

// findZone asks server for the zone name holds: the SOA of the name or
// of the nearest parent it answers for.
func findZone(ctx context.Context, client *dns.Client, server, name string) (string, error) {
	for n := name; n != "."; {
		q := new(dns.Msg).SetQuestion(n, dns.TypeSOA)
		q.RecursionDesired = false
		r, _, err := client.ExchangeContext(ctx, q, server)
		if err != nil {
			return "", fmt.Errorf("find the zone of %s at %s: %w", name, server, err)
		}
		for _, rr := range append(r.Answer, r.Ns...) {
			if soa, ok := rr.(*dns.SOA); ok {
				return soa.Hdr.Name, nil
			}
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			break
		}
	}
	return "", fmt.Errorf("the DNS server at %s holds no zone for %s", server, name)
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
