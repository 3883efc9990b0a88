package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"time"

	"erg"
	"erg/fedgrains"
	"erg/grains"
	"erg/tlsnode"
	"erg/webui"
)

var _ webui.Backend = (*Node)(nil)

// Status implements webui.Backend.
func (n *Node) Status(ctx context.Context) (erg.Status, error) {
	var apps int
	if err := n.db.QueryRowContext(ctx, `SELECT count(*) FROM apps`).Scan(&apps); err != nil {
		return erg.Status{}, err
	}
	st := erg.Status{
		Version:   n.cfg.Version,
		DataDir:   n.cfg.DataDir,
		URL:       n.URL(),
		Sandbox:   n.runner.Mode(),
		Cgroups:   n.runner.Cgroups(),
		NodeID:    n.NodeID(),
		Apps:      apps,
		Grains:    n.grains.Count(),
		Running:   n.grains.RunningCount(),
		Uptime:    erg.Duration(time.Since(n.started).Round(time.Second)),
		GrainIdle: erg.Duration(n.cfg.GrainIdle),
	}
	n.p2pStatus(&st)
	if n.friends != nil {
		st.Name = n.friends.Name()
	}
	return st, nil
}

// Grains implements webui.Backend.
func (n *Node) Grains(ctx context.Context, who erg.User) ([]erg.Grain, error) {
	out, err := n.grains.Local(ctx, who)
	if err != nil {
		return nil, err
	}
	out = append(out, n.sharing.List(ctx, who)...)
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Grain implements webui.Backend: the grain as who sees it, with its
// resource use if it is theirs.
func (n *Node) Grain(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	g, err := describe(ctx, n, who, id)
	if err != nil {
		return g, err
	}
	return n.grains.WithUsage(g, who), nil
}

// describe is a grain of n's, local or a friend's, as who sees it.
func describe(ctx context.Context, n *Node, who erg.User, id string) (erg.Grain, error) {
	h, err := n.resolve(id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.Describe(ctx, who)
}

// OpenGrain implements webui.Backend.
func (n *Node) OpenGrain(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	h, err := n.resolve(id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.Open(ctx, who)
}

func (n *Node) grainOrigin(id string) string {
	scheme, port := tlsnode.WebScheme(n.certs, n.webLn)
	return webui.GrainOrigin(scheme, n.cfg.Domain, id, port)
}

// grainHandle is a grain this node serves on a grain origin, one of its
// own (grains.Handle) or one a friend's node shared (fedgrains.Handle):
// the proxy's view of it, and the node's API's.
type grainHandle interface {
	webui.GrainHandle
	// Describe returns the grain as who sees it, if who may use it.
	Describe(ctx context.Context, who erg.User) (erg.Grain, error)
	// Open is Describe with a one-time login URL for the grain's origin.
	Open(ctx context.Context, who erg.User) (erg.Grain, error)
}

var (
	_ grainHandle = grains.Handle{}
	_ grainHandle = fedgrains.Handle{}
)

// resolve finds a grain served on this node's grain origins. Grain ids
// are random, so a local grain and a friend's never share one: the local
// cache is asked first, so its requests take no federation lock.
func (n *Node) resolve(id string) (grainHandle, error) {
	h, err := n.grains.Handle(id)
	if err == nil {
		return h, nil
	}
	if rh, rerr := n.sharing.Handle(id); rerr == nil {
		return rh, nil
	}
	return nil, err
}

// ResolveGrain implements webui.Backend.
func (n *Node) ResolveGrain(ctx context.Context, id string) (webui.GrainHandle, error) {
	h, err := n.resolve(id)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// derive makes a stable identifier from the node's key and parts, so
// grains get ids that are stable for them but mean nothing elsewhere.
func (n *Node) derive(parts ...string) string {
	mac := hmac.New(sha256.New, n.key.Seed())
	for _, p := range parts {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return hex.EncodeToString(mac.Sum(nil)[:16])
}
