package backup

import (
	"context"
	"fmt"
	"time"
)

// Policy is how many snapshots of each grain are kept: the Last newest,
// and the newest of each of the last Daily days, Weekly weeks and Monthly
// months that have one. The newest snapshot is always kept.
type Policy struct {
	Last    int `json:"last"`
	Daily   int `json:"daily"`
	Weekly  int `json:"weekly"`
	Monthly int `json:"monthly"`
}

// DefaultPolicy keeps the last three, a week of days, a month of weeks and half a year of
// months.
var DefaultPolicy = Policy{Last: 3, Daily: 7, Weekly: 4, Monthly: 6}

// Check refuses a policy that keeps nothing or is absurd.
func (p Policy) Check() error {
	if p.Last < 0 || p.Last > 1000 || p.Daily < 0 || p.Weekly < 0 || p.Monthly < 0 || p.Daily > 3660 || p.Weekly > 520 || p.Monthly > 1200 {
		return fmt.Errorf("retention counts must be between 0 and a few thousand")
	}
	return nil
}

// Keep returns which of hs (one grain's snapshots, any order) the policy
// keeps.
func (p Policy) Keep(hs []Header) map[string]bool {
	keep := map[string]bool{}
	sorted := append([]Header(nil), hs...)
	// newest first
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].Time.After(sorted[j-1].Time); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for i, h := range sorted {
		if i == 0 || i < p.Last {
			keep[h.Name] = true
		}
	}
	bucket := func(n int, key func(time.Time) string) {
		seen := map[string]bool{}
		for _, h := range sorted {
			if len(seen) >= n {
				return
			}
			k := key(h.Time.UTC())
			if seen[k] {
				continue
			}
			seen[k] = true
			keep[h.Name] = true
		}
	}
	bucket(p.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, "-", w) })
	bucket(p.Monthly, func(t time.Time) string { return t.Format("2006-01") })
	return keep
}

// Pruned is what Prune removed.
type Pruned struct {
	Snapshots int
	Chunks    int
	Bytes     int64
}

// Prune forgets the snapshots the policy does not keep, per grain, and
// then the chunks no snapshot left needs. Snapshots of grains that are in
// gone (deleted from the node) are kept by the same policy: a deleted
// grain can still be restored until its snapshots age out. When any
// snapshot header cannot be read, no chunk is removed (it might be one
// that snapshot needs).
func Prune(ctx context.Context, d Destination, k *NodeKeys, p Policy) (Pruned, error) {
	var out Pruned
	hs, bad, err := Headers(ctx, d, k)
	if err != nil {
		return out, err
	}
	groups := map[string][]Header{}
	for _, h := range hs {
		key := h.Kind + ":" + h.Grain
		groups[key] = append(groups[key], h)
	}
	refs := map[string]bool{}
	for _, g := range groups {
		keep := p.Keep(g)
		for _, h := range g {
			if keep[h.Name] {
				for _, c := range h.Refs {
					refs[c] = true
				}
				continue
			}
			if err := d.Delete(ctx, KindSnapshots, h.Name); err != nil {
				return out, err
			}
			out.Snapshots++
			out.Bytes += h.Stored
		}
	}
	if len(bad) > 0 {
		return out, nil
	}
	chunks, err := d.List(ctx, KindChunks)
	if err != nil {
		return out, err
	}
	for _, c := range chunks {
		if refs[c.Name] {
			continue
		}
		if err := d.Delete(ctx, KindChunks, c.Name); err != nil {
			return out, err
		}
		out.Chunks++
		out.Bytes += c.Size
	}
	return out, nil
}
