package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"erg"
)

// warnAfter is how long backups may fail before the main pages say so.
const warnAfter = 24 * time.Hour

// Status is the state of the backups, for the Backups page and the CLI.
func (s *Service) Status(ctx context.Context) (erg.BackupStatus, error) {
	st, err := s.settings(ctx)
	if err != nil {
		return erg.BackupStatus{}, err
	}
	out := erg.BackupStatus{HasCode: st.keys != nil, Every: erg.Duration(st.every),
		Retention:    erg.BackupRetention{Last: st.policy.Last, Daily: st.policy.Daily, Weekly: st.policy.Weekly, Monthly: st.policy.Monthly},
		Destinations: []erg.BackupDestination{}, Sources: []erg.BackupSource{}}
	s.mu.Lock()
	out.Running, out.Progress, out.LastRun = s.running, s.progress, s.lastRun
	if s.step != nil {
		step := *s.step
		out.Step = &step
	}
	s.mu.Unlock()
	dests, err := s.destinations(ctx)
	if err != nil {
		return out, err
	}
	if !out.LastRun.IsZero() {
		out.NextRun = out.LastRun.Add(st.every)
	}
	var oldestFailure time.Time
	for _, d := range dests {
		bd := erg.BackupDestination{ID: d.id, Kind: d.kind, Target: d.target, Name: s.destName(ctx, d)}
		var lastOK, failing, size int64
		var lastErr string
		s.db.QueryRowContext(ctx, `SELECT COALESCE(MIN(last_ok), 0), COALESCE(MIN(NULLIF(failing_since, 0)), 0), COALESCE(SUM(size), 0),
			COALESCE((SELECT last_error FROM backup_status WHERE dest_id = ? AND last_error != '' ORDER BY last_try DESC LIMIT 1), '')
			FROM backup_status WHERE dest_id = ?`, d.id, d.id).Scan(&lastOK, &failing, &size, &lastErr)
		if lastOK > 0 {
			bd.LastOK = time.Unix(lastOK, 0)
		}
		bd.Error = lastErr
		if failing > 0 {
			bd.Failing = true
			if f := time.Unix(failing, 0); oldestFailure.IsZero() || f.Before(oldestFailure) {
				oldestFailure = f
			}
		}
		bd.Used, bd.Quota = s.usage(ctx, d)
		out.Destinations = append(out.Destinations, bd)
	}
	titles := map[string]string{"node": "This node (users, apps, grains, shares, friends)"}
	for _, g := range s.cfg.Grains.Snapshottable() {
		titles[g.ID] = g.Title
	}
	rows, err := s.db.QueryContext(ctx, `SELECT source, MAX(last_ok), MAX(size), MAX(pause_us), MAX(last_error) FROM backup_status GROUP BY source ORDER BY source = 'node' DESC, source`)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var src erg.BackupSource
		var lastOK, pause int64
		if err := rows.Scan(&src.Source, &lastOK, &src.Size, &pause, &src.Error); err != nil {
			return out, err
		}
		title, ok := titles[src.Source]
		if !ok {
			continue // a grain since deleted
		}
		seen[src.Source] = true
		src.Title = title
		if lastOK > 0 {
			src.LastOK = time.Unix(lastOK, 0)
		}
		src.Pause = erg.Duration(time.Duration(pause) * time.Microsecond)
		out.Sources = append(out.Sources, src)
	}
	for id, title := range titles {
		if !seen[id] {
			out.Sources = append(out.Sources, erg.BackupSource{Source: id, Title: title})
		}
	}
	var failing int64
	if !oldestFailure.IsZero() {
		failing = oldestFailure.Unix()
	}
	out.Warning = warning(out.HasCode, len(dests), failing)
	return out, nil
}

// Warning is what the main pages say about backups, from the database
// alone (no destination is asked): off, or failing for over a day.
func (s *Service) Warning(ctx context.Context) string {
	st, err := s.settings(ctx)
	if err != nil {
		return ""
	}
	var dests int
	var failing int64
	s.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM backup_destinations),
		COALESCE((SELECT MIN(failing_since) FROM backup_status WHERE failing_since > 0), 0)`).Scan(&dests, &failing)
	return warning(st.keys != nil, dests, failing)
}

func warning(hasCode bool, dests int, failingSince int64) string {
	switch {
	case !hasCode:
		return "Backups are off: make a recovery code on the Backups page."
	case dests == 0:
		return "Backups are off: add a destination on the Backups page."
	case failingSince > 0 && time.Since(time.Unix(failingSince, 0)) > warnAfter:
		return fmt.Sprintf("Backups have been failing since %s.", time.Unix(failingSince, 0).UTC().Format("2 Jan 15:04 UTC"))
	}
	return ""
}

// usage is the space the repository takes at a destination, and the
// quota a friend offers. A destination that cannot be reached says 0.
func (s *Service) usage(ctx context.Context, d destRow) (used, quota int64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dest, err := s.open(ctx, d)
	if err != nil {
		return 0, 0
	}
	if q, ok := dest.(interface {
		Space(context.Context) (int64, int64, error)
	}); ok {
		used, quota, _ := q.Space(ctx)
		return used, quota
	}
	used, _ = Usage(ctx, dest)
	return used, 0
}

// Snapshots lists what each destination holds, with the node's keys.
func (s *Service) Snapshots(ctx context.Context) ([]erg.BackupSnapshot, error) {
	st, err := s.settings(ctx)
	if err != nil {
		return nil, err
	}
	if st.keys == nil {
		return []erg.BackupSnapshot{}, nil
	}
	dests, err := s.destinations(ctx)
	if err != nil {
		return nil, err
	}
	titles := map[string]string{"node": "This node"}
	for _, g := range s.cfg.Grains.Snapshottable() {
		titles[g.ID] = g.Title
	}
	byName := map[string]*erg.BackupSnapshot{}
	var order []string
	for _, d := range dests {
		dest, err := s.open(ctx, d)
		if err != nil {
			continue
		}
		hs, _, err := Headers(ctx, dest, st.keys)
		if err != nil {
			continue
		}
		name := s.destName(ctx, d)
		for _, h := range hs {
			if b, ok := byName[h.Name]; ok {
				b.At = append(b.At, name)
				continue
			}
			src := h.Grain
			if h.Kind == "node" {
				src = "node"
			}
			byName[h.Name] = &erg.BackupSnapshot{Name: h.Name, Source: src, Title: titles[src], Time: h.Time, Size: h.Size, Files: h.Files, At: []string{name}}
			order = append(order, h.Name)
		}
	}
	out := []erg.BackupSnapshot{}
	for _, n := range order {
		out = append(out, *byName[n])
	}
	sortSnapshots(out)
	return out, nil
}

func sortSnapshots(s []erg.BackupSnapshot) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Time.Before(s[j-1].Time); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// restorer opens every destination with the full keys from code.
func (s *Service) restorer(ctx context.Context, code string) (*Restorer, error) {
	keys, err := DeriveKeys(code)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	dests, err := s.destinations(ctx)
	if err != nil {
		return nil, err
	}
	var named []Named
	var problems []string
	for _, d := range dests {
		dest, err := s.open(ctx, d)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.destName(ctx, d), err))
			continue
		}
		named = append(named, Named{Name: s.destName(ctx, d), Dest: dest})
	}
	r, err := NewRestorer(ctx, keys, named)
	if errors.Is(err, ErrWrongCode) {
		return nil, fmt.Errorf("%w: that recovery code does not open these backups", erg.ErrForbidden)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrUnavailable, err)
	}
	r.Problems = append(problems, r.Problems...)
	return r, nil
}

// RestoreGrain brings a grain back from its backups with the recovery
// code: the newest snapshot (or the one named) that reads whole, as a new
// grain for who or over the grain itself.
func (s *Service) RestoreGrain(ctx context.Context, who erg.User, req erg.BackupRestoreRequest) (erg.BackupRestored, error) {
	if !s.runMu.TryLock() {
		return erg.BackupRestored{}, fmt.Errorf("%w: a backup or restore is already running", erg.ErrConflict)
	}
	defer s.runMu.Unlock()
	r, err := s.restorer(ctx, req.Code)
	if err != nil {
		return erg.BackupRestored{}, err
	}
	title := req.Grain
	if g, err := s.cfg.Grains.Own(who, req.Grain); err == nil {
		title = g.Title()
	}
	s.setStep(erg.BackupProgress{What: "restore", Source: title})
	r.Progress = s.stepper(erg.BackupProgress{What: "restore", Source: title})
	defer s.endProgress()
	match := func(h Header) bool {
		return h.Kind == "grain" && h.Grain == req.Grain && (req.Snapshot == "" || h.Name == req.Snapshot)
	}
	var out erg.BackupRestored
	fill := func(varDir string) error {
		h, _, err := r.Latest(ctx, match, nil, func() (map[string]string, func(), error) {
			return map[string]string{"var": varDir}, func() { emptyDir(varDir) }, nil
		})
		if err != nil {
			return fmt.Errorf("%w: %v", erg.ErrNotFound, err)
		}
		out.Snapshot, out.Time = h.Name, h.Time
		return nil
	}
	// What the newest readable snapshot unpacks to is checked against the
	// disk bounds before anything is written.
	t, err := r.newestTree(ctx, match)
	if err != nil {
		return out, err
	}
	var size int64
	for _, f := range t.Files {
		size += max(f.Size, 0)
	}
	if req.Over {
		if err := s.cfg.Grains.RestoreOver(ctx, who, req.Grain, size, fill); err != nil {
			return out, err
		}
		g, err := s.cfg.Grains.Own(who, req.Grain)
		if err != nil {
			return out, err
		}
		out.Grain = erg.Grain{ID: g.ID(), Title: g.Title()}
	} else {
		// The app and title are in the tree.
		g, err := s.cfg.Grains.RestoreNew(ctx, who, t.Grain.AppID, t.Grain.AppVersion, t.Grain.Title, size, fill)
		if err != nil {
			return out, err
		}
		out.Grain = g
	}
	out.Problems = r.Problems
	return out, nil
}

func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
