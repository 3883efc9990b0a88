package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Addresses of the Internet topology. The "internet" uses public-looking
// addresses (as go-libp2p's own NAT tests do), which AutoNAT and relays
// need in order to treat its hosts as public; the lab is sealed, so they
// never meet the real ones.
const (
	PublicNet    = "1.2.0.0/24"
	RAddr        = "1.2.0.10" // R: a reachable node
	StrangerAddr = "1.2.0.20" // a node no one befriended
)

// Home is one home: a router doing NAT between the internet and the LAN,
// and the host on the LAN.
type Home struct {
	Router *NS
	Host   *NS
	WAN    string // the router's public address
	LAN    string // the host's address on the LAN
	Kind   string // "easy", "hard" or "upnp"
}

// Internet is the topology of the lab: a bridge with public addresses (in
// namespace inet) with R and a stranger on it, and three homes behind NAT
// routers:
//
//	nat-a: masquerade, endpoint-independent mapping (hole punching works)
//	nat-b: masquerade fully-random, a new port per connection (hard NAT)
//	nat-c: masquerade and miniupnpd, answering UPnP IGD and NAT-PMP
//	nat-d: masquerade like nat-a, so that two homes behind easy NATs
//	       and without port mapping show hole punching (A and D)
//
// The routers filter as home routers do: from the internet, only replies
// to what the LAN sent (and, on nat-c, what miniupnpd mapped) get in.
type Internet struct {
	*Lab
	Inet, R, Stranger *NS
	A, B, C, D        Home
	miniupnpd         *Proc
	upnpConf          string
	upnpPort          int // miniupnpd's UPnP control port (HTTP)
}

// NewInternet builds the topology, checks it is sealed, and starts
// miniupnpd on nat-c. It skips the test where labs cannot be made or the
// tools (nft, conntrack, miniupnpd) are missing.
func NewInternet(t testing.TB) *Internet {
	t.Helper()
	if why := Usable(); why != "" {
		t.Skip(why)
	}
	for _, tool := range []string{"nft", "conntrack", "miniupnpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the lab needs %s (apt-get install nftables conntrack miniupnpd-nftables)", tool)
		}
	}
	l := New(t)
	in := &Internet{Lab: l}
	in.Inet = l.NS("inet")
	in.R = l.NS("r")
	in.Stranger = l.NS("stranger")
	ports := []string{}
	for _, h := range []struct {
		ns   *NS
		addr string
	}{{in.R, RAddr}, {in.Stranger, StrangerAddr}} {
		port := "p-" + h.ns.Name
		l.Link(in.Inet, port, "", h.ns, "eth0", h.addr+"/24")
		ports = append(ports, port)
	}
	homes := []*Home{&in.A, &in.B, &in.C, &in.D}
	kinds := []string{"easy", "hard", "upnp", "easy"}
	for i, h := range homes {
		letter := string(rune('a' + i))
		h.Kind = kinds[i]
		h.Router = l.NS("nat-" + letter)
		h.Host = l.NS("home-" + letter)
		h.WAN = fmt.Sprintf("1.2.0.%d", i+1)
		h.LAN = fmt.Sprintf("192.168.%d.2", i+1)
		port := "p-nat-" + letter
		l.Link(in.Inet, port, "", h.Router, "wan", h.WAN+"/24")
		ports = append(ports, port)
		l.Link(h.Router, "lan", fmt.Sprintf("192.168.%d.1/24", i+1), h.Host, "eth0", h.LAN+"/24")
		h.Host.Route("default", "via", fmt.Sprintf("192.168.%d.1", i+1))
		h.Router.Sysctl("net.ipv4.ip_forward=1")
		// Count each flow's bytes (Home.Bytes), so a benchmark can tell
		// which transport carried a download.
		h.Router.Sysctl("net.netfilter.nf_conntrack_acct=1")
		h.Router.Nft(natRules(h.Kind))
	}
	in.Inet.Bridge("br0", "", ports...)
	if err := l.Sealed(); err != nil {
		t.Fatalf("lab is not sealed: %v", err)
	}
	in.upnpPort = 5000 // OpenWrt's
	in.startMiniupnpd()
	return in
}

// Join adds a namespace to the internet, at addr on its bridge: a
// network with a public address and no NAT (a café's, say, or a
// server's). The lab is checked to be sealed again.
func (in *Internet) Join(name, addr string) *NS {
	in.t.Helper()
	ns := in.NS(name)
	port := "p-" + name
	in.Link(in.Inet, port, "", ns, "eth0", addr+"/24")
	in.Inet.Must("ip", "link", "set", port, "master", "br0")
	if err := in.Sealed(); err != nil {
		in.t.Fatalf("lab is not sealed: %v", err)
	}
	return ns
}

// Homes are the homes, a to d.
func (in *Internet) Homes() []Home { return []Home{in.A, in.B, in.C, in.D} }

// natRules is a home router's ruleset. The upnp one has the chains
// miniupnpd fills with its mappings.
func natRules(kind string) string {
	masq := "masquerade"
	if kind == "hard" {
		masq = "masquerade fully-random"
	}
	upnpFwd, upnpPre, upnpPost, upnpChains := "", "", "", ""
	if kind == "upnp" {
		upnpFwd = "jump miniupnpd"
		upnpPre = "jump prerouting_miniupnpd"
		upnpPost = "jump postrouting_miniupnpd"
		upnpChains = `
	chain miniupnpd {}
	chain prerouting_miniupnpd {}
	chain postrouting_miniupnpd {}`
	}
	// The input chain drops what the internet sends the router unasked,
	// silently, as home routers do: a refusal (a TCP reset, an ICMP port
	// unreachable) would end a hole punch's first packets, and the
	// conntrack entry such a packet leaves would make the router map the
	// home's answering packets to another port.
	return fmt.Sprintf(`table inet erglab {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
		%s
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		%s
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		%s
		oifname "wan" %s
	}%s
}
`, upnpFwd, upnpPre, upnpPost, masq, upnpChains)
}

func (in *Internet) startMiniupnpd() {
	t := in.t
	t.Helper()
	dir := t.TempDir()
	in.upnpConf = filepath.Join(dir, "miniupnpd.conf")
	conf := fmt.Sprintf(`ext_ifname=wan
listening_ip=lan
http_port=%d
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3b8a3c5e-6f2d-4e1a-9a8b-%012d
upnp_table_name=erglab
upnp_nat_table_name=erglab
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.3.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, in.upnpPort, os.Getpid())
	if err := os.WriteFile(in.upnpConf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	in.miniupnpd = in.C.Router.Daemon("miniupnpd", "miniupnpd", "-d", "-f", in.upnpConf, "-P", filepath.Join(dir, "miniupnpd.pid"))
}

// RestartRouters is what a power cut does to the homes' routers: their
// NAT tables are flushed (conntrack -F) and miniupnpd restarts,
// forgetting its mappings, on a new control port (as miniupnpd's
// default, http_port=0, picks one at each start): go-libp2p finds the
// router again only after three failed renewals, and maps a new
// external port.
func (in *Internet) RestartRouters() {
	in.t.Helper()
	in.upnpPort++
	in.RestartMiniupnpd()
	for _, h := range in.Homes() {
		h.Router.Must("conntrack", "-F")
	}
}

// RestartMiniupnpd restarts nat-c's miniupnpd on its control port, which
// forgets its mappings and the rules it made for them: nothing from the
// internet gets into C's home until go-libp2p's next renewal (it renews
// every 20 s) maps the same external port again, with nothing on the
// node seeing that the mapping was gone.
func (in *Internet) RestartMiniupnpd() {
	in.t.Helper()
	in.miniupnpd.Stop()
	for _, chain := range []string{"miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"} {
		in.C.Router.Must("nft", "flush", "chain", "inet", "erglab", chain)
	}
	in.startMiniupnpd()
}

// DropIncoming makes the router drop every new connection from the
// internet into the home, mapped or not (TCP and UDP alike), until the
// returned func is called; connections open now carry on.
func (h Home) DropIncoming() (undo func()) {
	h.Router.Nft(`table inet ergdrop {
	chain forward {
		type filter hook forward priority filter - 1; policy accept;
		iifname "wan" ct state new drop
	}
}
`)
	return func() { h.Router.Must("nft", "delete", "table", "inet", "ergdrop") }
}

// Direct tells whether the router's NAT table holds a flow with the
// other home's router that was answered (no [UNREPLIED]): where the
// packets of a direct connection between the two homes go. A relayed
// connection has flows with the relay only; a failed hole punch leaves
// only unanswered ones.
func (h Home) Direct(other Home) bool {
	for _, proto := range []string{"tcp", "udp"} {
		for _, line := range strings.Split(h.Conntrack(proto), "\n") {
			if strings.Contains(line, "="+other.WAN+" ") && !strings.Contains(line, "UNREPLIED") {
				return true
			}
		}
	}
	return false
}

// Conntrack lists a router's NAT table entries for a protocol ("tcp" or
// "udp").
func (h Home) Conntrack(proto string) string {
	out, _ := h.Router.Run("conntrack", "-L", "-p", proto)
	return out
}

// Bytes is what the router's flows of proto ("tcp" or "udp") with ip
// carried so far, both ways.
func (h Home) Bytes(proto, ip string) int64 {
	var n int64
	for _, line := range strings.Split(h.Conntrack(proto), "\n") {
		if !strings.Contains(line, "="+ip+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "bytes="); ok {
				b, _ := strconv.ParseInt(v, 10, 64)
				n += b
			}
		}
	}
	return n
}
