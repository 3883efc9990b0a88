package node

import (
	"context"

	"erg"
)

// NewShare implements webui.Backend.
func (n *Node) NewShare(ctx context.Context, who erg.User, grainID string, req erg.ShareRequest) (erg.Share, error) {
	return n.shares.New(ctx, who, grainID, req)
}

// Shares implements webui.Backend.
func (n *Node) Shares(ctx context.Context, who erg.User, grainID string) ([]erg.Share, error) {
	return n.shares.List(ctx, who, grainID)
}

// RevokeShare implements webui.Backend.
func (n *Node) RevokeShare(ctx context.Context, who erg.User, shareID string) error {
	return n.shares.Revoke(ctx, who, shareID)
}

// OpenShare implements webui.Backend.
func (n *Node) OpenShare(ctx context.Context, who *erg.User, token string) (erg.Grain, error) {
	return n.shares.Open(ctx, who, token)
}
