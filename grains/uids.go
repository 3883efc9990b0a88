package grains

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// One host uid per grain: as root, the sandbox runner reserves a range of
// uids, and each grain gets one of them the first time it needs one (at
// creation, or at its first start if it was made before). The choice is
// recorded in grain_uids, so it is the same after a restart, and the row
// is dropped only once the grain's storage is gone, so no other grain
// gets the uid while its files exist. The lowest free uid is taken.
// Unprivileged, a sandbox can only be the node's own uid: no uid is
// recorded and grains run as the node.

// grainUID returns the host uid of grain id, allocating one if it has
// none; 0 when the runner gives no per-grain uids.
func (s *Service) grainUID(ctx context.Context, id string) (uint32, error) {
	base, count, ok := s.cfg.Runner.UIDRange()
	if !ok {
		return 0, nil
	}
	s.uidMu.Lock()
	defer s.uidMu.Unlock()
	var uid int64
	err := s.db.QueryRowContext(ctx, `SELECT uid FROM grain_uids WHERE grain_id = ?`, id).Scan(&uid)
	if err == nil {
		if uid < int64(base) || uid >= int64(base)+int64(count) {
			return 0, fmt.Errorf("grain %s has uid %d, outside the sandboxes' uid range %d+%d (was the range changed?)", id, uid, base, count)
		}
		return uint32(uid), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("grain %s uid: %w", id, err)
	}
	// The lowest uid in the range that no row has: base itself, or one
	// past a taken uid whose successor is free.
	err = s.db.QueryRowContext(ctx, `SELECT CASE
			WHEN NOT EXISTS (SELECT 1 FROM grain_uids WHERE uid = ?1) THEN ?1
			ELSE (SELECT MIN(a.uid) + 1 FROM grain_uids a WHERE a.uid >= ?1 AND a.uid < ?2
				AND NOT EXISTS (SELECT 1 FROM grain_uids b WHERE b.uid = a.uid + 1))
		END`, int64(base), int64(base)+int64(count)).Scan(&uid)
	if err != nil {
		return 0, fmt.Errorf("grain %s uid: %w", id, err)
	}
	if uid >= int64(base)+int64(count) {
		return 0, fmt.Errorf("no free uid left for grain %s: all %d of the sandboxes' range are taken", id, count)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO grain_uids (grain_id, uid) VALUES (?, ?)`, id, uid); err != nil {
		return 0, fmt.Errorf("record grain %s uid: %w", id, err)
	}
	s.log.Debug("grain uid", "grain", id, "uid", uid)
	return uint32(uid), nil
}

// dropGrainUID frees a removed grain's uid; call it once its storage is
// gone.
func (s *Service) dropGrainUID(ctx context.Context, id string) {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM grain_uids WHERE grain_id = ?`, id); err != nil {
		s.log.Warn("free grain uid", "grain", id, "err", err)
	}
}
