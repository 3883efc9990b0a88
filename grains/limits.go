package grains

import (
	"context"
	"fmt"

	"erg"
	"erg/accounts"
)

// maxCPUPercent bounds a CPU ceiling: 1024 cores' worth.
const maxCPUPercent = 102400

// SetCPUPercent sets, for the node's owner, one grain's CPU ceiling in
// percent of one core over its app's and the node's: 0 lifts any ceiling,
// nil goes back to the app's (or the node's) own. It applies from the
// grain's next start.
func (s *Service) SetCPUPercent(ctx context.Context, who erg.User, id string, pct *int) error {
	if err := accounts.RequireOwner(who); err != nil {
		return err
	}
	g, err := s.Lookup(id)
	if err != nil {
		return err
	}
	if pct != nil && (*pct < 0 || *pct > maxCPUPercent) {
		return fmt.Errorf("%w: a CPU ceiling is 0 (none) to %d percent of one core, not %d", erg.ErrInvalid, maxCPUPercent, *pct)
	}
	var v any
	if pct != nil {
		v = *pct
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO grain_limits (grain_id, cpu_percent) VALUES (?, ?)
		ON CONFLICT (grain_id) DO UPDATE SET cpu_percent = excluded.cpu_percent`, id, v); err != nil {
		return fmt.Errorf("set grain %s CPU ceiling: %w", id, err)
	}
	s.mu.Lock()
	if pct != nil {
		c := *pct
		g.cpuPercent = &c
	} else {
		g.cpuPercent = nil
	}
	s.mu.Unlock()
	return nil
}

// ForNodeOwner is any grain on the node with its usage and limits, for
// the node's owner.
func (s *Service) ForNodeOwner(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
	if err := accounts.RequireOwner(who); err != nil {
		return erg.Grain{}, err
	}
	g, err := s.Lookup(id)
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	out := s.ToAPI(g, who, "", names)
	out.Usage = s.usageOf(g)
	return out, nil
}
