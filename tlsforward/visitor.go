package tlsforward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// A forwarded stream starts with the visitor's address, before the TLS
// bytes: one length byte, then "ip:port". The friend forwarding is
// trusted with it as it is trusted with the connection itself (a friend
// who lied could as well send the traffic from anywhere); it lets the home
// node's per-address limits tell visitors apart.

const maxVisitor = 64 // "[v6 address]:port" fits

// writeVisitor sends the visitor's address a: its IP and port, or an
// empty one if it is not an IP address.
func writeVisitor(st network.Stream, a net.Addr) error {
	var text string
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		text = ap.String()
	}
	_, err := st.Write(append([]byte{byte(len(text))}, text...))
	return err
}

// readVisitor reads the address writeVisitor sent: nil if the friend sent
// none, an error if what it sent is not an address.
func readVisitor(st network.Stream) (net.Addr, error) {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	var n [1]byte
	if _, err := io.ReadFull(st, n[:]); err != nil {
		return nil, fmt.Errorf("the visitor's address: %w", err)
	}
	if n[0] == 0 {
		return nil, nil
	}
	if n[0] > maxVisitor {
		return nil, errors.New("the visitor's address is too long")
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(st, b); err != nil {
		return nil, fmt.Errorf("the visitor's address: %w", err)
	}
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return nil, fmt.Errorf("the visitor's address %q: %w", b, err)
	}
	return net.TCPAddrFromAddrPort(ap), nil
}
