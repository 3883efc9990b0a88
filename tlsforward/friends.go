package tlsforward

import (
	"context"
	"log/slog"
	"net"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg/friends"
)

// ForFriends is the service for a node whose friends are fr: this node
// forwards TLS for friends who ask, and asks friends to forward for it;
// addr is where its web port is reached; stateFile keeps what it forwards
// and asked for across restarts.
func ForFriends(h host.Host, fr *friends.Service, domain string, deliver func(net.Conn) bool, addr, stateFile string, log *slog.Logger) *Service {
	return New(Config{
		Host: h, Domain: domain, IsFriend: fr.IsFriend, StateFile: stateFile,
		FriendName: func(p peer.ID) string {
			if f, err := fr.ByPeer(context.Background(), p.String()); err == nil {
				return f.Name
			}
			return p.String()
		},
		Deliver: deliver,
		WebAddr: func() string { return addr },
		Log:     log.With("subsystem", "tlsforward"),
	})
}
