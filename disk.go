package erg

import (
	"context"
	"net/url"
)

// GrainDisk is what a grain keeps in /var and its bound.
type GrainDisk struct {
	UsedBytes  int64 `json:"usedBytes"`
	BoundBytes int64 `json:"boundBytes"`
	// Enforced is true when the kernel bounds the grain's /var (its own
	// file-system image); otherwise the node measures it and stops the
	// grain when over.
	Enforced bool `json:"enforced"`
	// OwnerMB is the node owner's bound for this grain, if they set one.
	OwnerMB *int `json:"ownerMB,omitempty"`
}

// DiskRequest sets the node owner's bound on a grain's /var in MiB; MB
// nil goes back to the app's or the node's.
type DiskRequest struct {
	MB *int `json:"mb"`
}

// GrainDisk says what a grain keeps in /var and its bound.
func (c *Client) GrainDisk(ctx context.Context, id string) (GrainDisk, error) {
	var d GrainDisk
	return d, c.do(ctx, "GET", "/api/grains/"+url.PathEscape(id)+"/disk", nil, &d)
}

// SetGrainDisk sets, as the node's owner, the bound on a grain's /var in
// MiB (nil: back to the app's or the node's); it applies from the grain's
// next start.
func (c *Client) SetGrainDisk(ctx context.Context, id string, mb *int) (GrainDisk, error) {
	var d GrainDisk
	return d, c.do(ctx, "PUT", "/api/grains/"+url.PathEscape(id)+"/disk", DiskRequest{MB: mb}, &d)
}
