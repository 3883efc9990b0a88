package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"erg/fed"
	"erg/p2p"
)

// RestoreClient reaches friends who keep this node's backups, as the
// restore peer of the recovery code, before the node exists again.
type RestoreClient struct {
	host  *p2p.Host
	Named []Named
}

// Close ends the client's libp2p host.
func (c *RestoreClient) Close() error { return c.host.Close() }

// DialForRestore connects to each friend, given as an invite code
// ("erg-friend:…") or a multiaddr ending in /p2p/<id>. Friends that cannot
// be reached are reported; it fails only when none can.
func DialForRestore(ctx context.Context, k *Keys, friends []string) (*RestoreClient, error) {
	h, err := RestoreHost(ctx, k)
	if err != nil {
		return nil, err
	}
	c := &RestoreClient{host: h}
	var errs []error
	for _, f := range friends {
		ai, name, err := parseFriend(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := h.Connect(ctx, ai); err != nil {
			errs = append(errs, fmt.Errorf("%s is not reachable: %w", name, err))
			continue
		}
		c.Named = append(c.Named, Named{Name: name, Dest: NewRemote(h, ai.ID, name, nil)})
	}
	if len(c.Named) == 0 {
		h.Close()
		if len(errs) == 0 {
			return nil, errors.New("no friend given")
		}
		return nil, errors.Join(errs...)
	}
	return c, errors.Join(errs...)
}

func parseFriend(s string) (peer.AddrInfo, string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "erg-friend:") {
		inv, err := fed.ParseInvite(s)
		if err != nil {
			return peer.AddrInfo{}, "", err
		}
		id, err := peer.Decode(inv.Peer)
		if err != nil {
			return peer.AddrInfo{}, "", fmt.Errorf("the invite names no node: %w", err)
		}
		ai := peer.AddrInfo{ID: id}
		for _, a := range inv.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				ai.Addrs = append(ai.Addrs, m)
			}
		}
		name := inv.Name
		if name == "" {
			name = inv.Peer
		}
		return ai, name, nil
	}
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, "", fmt.Errorf("%q is neither a friend invite nor a multiaddr", s)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return peer.AddrInfo{}, "", fmt.Errorf("%s: a friend's address must end in /p2p/<peer id>", s)
	}
	return *ai, ai.ID.String(), nil
}
