package backup

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"erg"
	"erg/grains"
)

// Config is what the backup service needs from the node.
type Config struct {
	DB       *sql.DB
	Dir      string // the service's own files: the file cache and staging
	Grains   *grains.Service
	DataDir  string // the node's data dir, for a restore of the whole node
	Identity string // the node's identity key file, backed up with the node
	// NodeFiles are more small files of the data dir backed up with the
	// node (the kept libp2p port, so friends' stored addresses still work).
	NodeFiles []string
	Packages  string // installed package trees, backed up with the node
	// Friend opens the space a friend offers this node; nil when the node
	// has no libp2p host.
	Friend func(ctx context.Context, peer string) (Destination, error)
	// FriendName is what the user calls a friend, by peer id.
	FriendName func(ctx context.Context, peer string) string
	// FriendPeer finds a friend's peer id by name.
	FriendPeer func(ctx context.Context, name string) (string, error)
	// Held is where friends' backups kept on this node go; empty keeps none.
	Held string
	Log  *slog.Logger
	Tick time.Duration // how often the schedule is looked at; default 1m
}

// Service runs the node's backups: the schedule, the runs (one at a
// time), retention, status, and restores of single grains.
type Service struct {
	cfg Config
	log *slog.Logger
	db  *sql.DB

	holder *Holder // friends' backups this node keeps

	runMu sync.Mutex // one run or restore at a time

	mu       sync.Mutex
	running  bool
	progress string
	step     *erg.BackupProgress
	lastRun  time.Time

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// New starts the backup service and its schedule.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "staging"), 0o700); err != nil {
		return nil, err
	}
	// A run killed mid-way leaves staging copies: they are only copies.
	ents, _ := os.ReadDir(filepath.Join(cfg.Dir, "staging"))
	for _, e := range ents {
		os.RemoveAll(filepath.Join(cfg.Dir, "staging", e.Name()))
	}
	s := &Service{cfg: cfg, log: cfg.Log, db: cfg.DB, stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Held != "" {
		s.holder = NewHolder(cfg.DB, cfg.Held, cfg.Log.With("part", "held"))
	}
	var last int64
	s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(last_try), 0) FROM backup_status`).Scan(&last)
	if last > 0 {
		s.lastRun = time.Unix(last, 0)
	}
	go s.loop()
	return s, nil
}

// Close stops the schedule; a run in progress is cut short (it leaves
// nothing mistaken for a backup).
func (s *Service) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Service) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.due(ctx) {
			continue
		}
		if _, err := s.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduled backup", "err", err)
		}
	}
}

func (s *Service) due(ctx context.Context) bool {
	st, err := s.settings(ctx)
	if err != nil || st.keys == nil {
		return false
	}
	var n int
	s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM backup_destinations`).Scan(&n)
	if n == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.running && time.Since(s.lastRun) >= st.every
}

type settings struct {
	keys   *NodeKeys
	every  time.Duration
	policy Policy
}

func (s *Service) settings(ctx context.Context) (settings, error) {
	var st settings
	var keys string
	var every int64
	err := s.db.QueryRowContext(ctx, `SELECT keys, every_seconds, last, daily, weekly, monthly FROM backup_settings WHERE id = 1`).
		Scan(&keys, &every, &st.policy.Last, &st.policy.Daily, &st.policy.Weekly, &st.policy.Monthly)
	if err != nil {
		return st, err
	}
	st.every = time.Duration(every) * time.Second
	if keys != "" {
		var k NodeKeys
		if err := json.Unmarshal([]byte(keys), &k); err != nil {
			return st, fmt.Errorf("backup keys: %w", err)
		}
		if err := k.Check(); err != nil {
			return st, err
		}
		st.keys = &k
	}
	return st, nil
}

// Keys are the node's backup keys, or nil before a recovery code is made.
func (s *Service) Keys(ctx context.Context) (*NodeKeys, error) {
	st, err := s.settings(ctx)
	return st.keys, err
}

// NewCode makes a recovery code and keeps the node's part of its keys.
// The code itself is returned once and never stored.
func (s *Service) NewCode(ctx context.Context) (string, error) {
	code := NewCode()
	k, err := DeriveKeys(code)
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(k.NodeKeys)
	if _, err := s.db.ExecContext(ctx, `UPDATE backup_settings SET keys = ? WHERE id = 1`, string(b)); err != nil {
		return "", err
	}
	s.log.Info("new recovery code made", "fingerprint", k.Fingerprint)
	return code, nil
}

// SetSettings changes the schedule and retention.
func (s *Service) SetSettings(ctx context.Context, in erg.BackupSettings) error {
	if in.Every != 0 {
		if every := time.Duration(in.Every); every < time.Minute || every > 90*24*time.Hour {
			return fmt.Errorf("%w: back up between every minute and every 90 days", erg.ErrInvalid)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE backup_settings SET every_seconds = ? WHERE id = 1`, int64(time.Duration(in.Every)/time.Second)); err != nil {
			return err
		}
	}
	if r := in.Retention; r != nil {
		p := Policy{Last: r.Last, Daily: r.Daily, Weekly: r.Weekly, Monthly: r.Monthly}
		if err := p.Check(); err != nil {
			return fmt.Errorf("%w: %v", erg.ErrInvalid, err)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE backup_settings SET last = ?, daily = ?, weekly = ?, monthly = ? WHERE id = 1`, p.Last, p.Daily, p.Weekly, p.Monthly); err != nil {
			return err
		}
	}
	return nil
}

type destRow struct {
	id, kind, target string
}

func (s *Service) destinations(ctx context.Context) ([]destRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, target FROM backup_destinations ORDER BY added_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []destRow
	for rows.Next() {
		var d destRow
		if err := rows.Scan(&d.id, &d.kind, &d.target); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *Service) open(ctx context.Context, d destRow) (Destination, error) {
	switch d.kind {
	case "dir":
		return OpenDir(d.target)
	case "friend":
		if s.cfg.Friend == nil {
			return nil, errors.New("friends are not reachable from this node")
		}
		return s.cfg.Friend(ctx, d.target)
	}
	return nil, fmt.Errorf("unknown destination kind %q", d.kind)
}

func (s *Service) destName(ctx context.Context, d destRow) string {
	if d.kind == "friend" && s.cfg.FriendName != nil {
		return s.cfg.FriendName(ctx, d.target)
	}
	return d.target
}

// AddDestination adds a directory or a friend as a place backups go.
func (s *Service) AddDestination(ctx context.Context, req erg.BackupDestinationRequest) (erg.BackupDestination, error) {
	var d destRow
	switch {
	case req.Dir != "" && req.Friend == "":
		if !filepath.IsAbs(req.Dir) {
			return erg.BackupDestination{}, fmt.Errorf("%w: the backup directory must be an absolute path", erg.ErrInvalid)
		}
		dir := filepath.Clean(req.Dir)
		if _, err := OpenDir(dir); err != nil {
			return erg.BackupDestination{}, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
		}
		d = destRow{kind: "dir", target: dir}
	case req.Friend != "" && req.Dir == "":
		if s.cfg.FriendPeer == nil {
			return erg.BackupDestination{}, fmt.Errorf("%w: friends are not reachable from this node", erg.ErrUnavailable)
		}
		p, err := s.cfg.FriendPeer(ctx, req.Friend)
		if err != nil {
			return erg.BackupDestination{}, err
		}
		d = destRow{kind: "friend", target: p}
	default:
		return erg.BackupDestination{}, fmt.Errorf("%w: name a directory or a friend", erg.ErrInvalid)
	}
	id := make([]byte, 6)
	rand.Read(id)
	d.id = hex.EncodeToString(id)
	_, err := s.db.ExecContext(ctx, `INSERT INTO backup_destinations (id, kind, target, added_at) VALUES (?, ?, ?, ?)`, d.id, d.kind, d.target, time.Now().Unix())
	if err != nil {
		return erg.BackupDestination{}, fmt.Errorf("%w: that destination is already there", erg.ErrConflict)
	}
	return erg.BackupDestination{ID: d.id, Kind: d.kind, Target: d.target, Name: s.destName(ctx, d)}, nil
}

// RemoveDestination stops backing up somewhere; what is there stays.
func (s *Service) RemoveDestination(ctx context.Context, id string) error {
	r, err := s.db.ExecContext(ctx, `DELETE FROM backup_destinations WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: no backup destination %s", erg.ErrNotFound, id)
	}
	return nil
}

// Run backs up the node and every grain to every destination now.
func (s *Service) Run(ctx context.Context) (erg.BackupRun, error) {
	if !s.runMu.TryLock() {
		return erg.BackupRun{}, fmt.Errorf("%w: a backup or restore is already running", erg.ErrConflict)
	}
	defer s.runMu.Unlock()
	st, err := s.settings(ctx)
	if err != nil {
		return erg.BackupRun{}, err
	}
	if st.keys == nil {
		return erg.BackupRun{}, fmt.Errorf("%w: make a recovery code first (Backups page or Settings)", erg.ErrInvalid)
	}
	dests, err := s.destinations(ctx)
	if err != nil {
		return erg.BackupRun{}, err
	}
	if len(dests) == 0 {
		return erg.BackupRun{}, fmt.Errorf("%w: add a backup destination first", erg.ErrInvalid)
	}
	report := erg.BackupRun{Started: time.Now().UTC(), Written: map[string]int64{}}
	s.mu.Lock()
	s.running, s.lastRun = true, report.Started
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running, s.progress, s.step = false, "", nil
		s.mu.Unlock()
	}()

	var targets []*Target
	byTarget := map[*Target]destRow{}
	for _, d := range dests {
		t := &Target{Name: s.destName(ctx, d)}
		t.Dest, t.Err = s.open(ctx, d)
		targets = append(targets, t)
		byTarget[t] = d
	}
	for _, t := range targets {
		if h, ok := t.Dest.(interface {
			Hello(context.Context, []byte) error
		}); ok && t.Err == nil {
			t.Err = h.Hello(ctx, st.keys.RestorePub)
		}
	}
	s.setProgress("looking at what the destinations hold")
	run := NewRun(ctx, st.keys, targets, filepath.Join(s.cfg.Dir, "files.json"), filepath.Join(s.cfg.Dir, "staging"))
	for _, t := range targets {
		if t.Err != nil {
			report.Failed = append(report.Failed, fmt.Sprintf("to %s: %v", t.Name, t.Err))
		}
	}
	sources, err := s.sources(ctx)
	if err != nil {
		return report, err
	}
	for i, src := range sources {
		if ctx.Err() != nil {
			return report, ctx.Err()
		}
		step := erg.BackupProgress{What: "backup", Source: sourceTitle(src), SourcesDone: i, Sources: len(sources)}
		s.setStep(step)
		run.Progress = s.stepper(step)
		before := map[*Target]error{}
		for _, t := range targets {
			before[t] = t.Err
		}
		res, err := run.Snapshot(ctx, src.Source)
		if src.cleanup != nil {
			src.cleanup()
		}
		key := sourceKey(src.Source)
		for _, t := range targets {
			terr := t.Err
			if err != nil && terr == nil {
				terr = err
			}
			s.record(ctx, byTarget[t], key, res, terr)
			if err == nil && terr != nil && before[t] == nil {
				report.Failed = append(report.Failed, fmt.Sprintf("%s to %s: %v", sourceTitle(src), t.Name, terr))
			}
		}
		if err != nil {
			report.Failed = append(report.Failed, fmt.Sprintf("%s: %v", sourceTitle(src), err))
		}
		report.Sources++
	}
	run.SaveCache()
	s.setProgress("removing snapshots the retention policy no longer keeps")
	for _, t := range targets {
		if t.Err != nil {
			continue
		}
		if _, err := Prune(ctx, t.Dest, st.keys, st.policy); err != nil {
			report.Failed = append(report.Failed, fmt.Sprintf("prune %s: %v", t.Name, err))
		}
		report.Written[t.Name] = t.Written
	}
	report.Finished = time.Now().UTC()
	s.log.Info("backup run", "sources", report.Sources, "failed", len(report.Failed), "took", report.Finished.Sub(report.Started))
	for _, f := range report.Failed {
		s.log.Warn("backup failed", "what", f) // the owner reads why in the node's log, not only a count
	}
	return report, nil
}

func (s *Service) record(ctx context.Context, d destRow, key string, res Result, err error) {
	now := time.Now().Unix()
	if err == nil {
		s.db.ExecContext(ctx, `INSERT INTO backup_status (dest_id, source, last_ok, last_try, last_error, failing_since, size, pause_us)
			VALUES (?, ?, ?, ?, '', 0, ?, ?) ON CONFLICT (dest_id, source) DO UPDATE SET last_ok = excluded.last_ok,
			last_try = excluded.last_try, last_error = '', failing_since = 0, size = excluded.size, pause_us = excluded.pause_us`,
			d.id, key, now, now, res.Size, res.Pause.Microseconds())
		return
	}
	s.db.ExecContext(ctx, `INSERT INTO backup_status (dest_id, source, last_try, last_error, failing_since)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (dest_id, source) DO UPDATE SET last_try = excluded.last_try,
		last_error = excluded.last_error, failing_since = CASE WHEN failing_since = 0 THEN excluded.failing_since ELSE failing_since END`,
		d.id, key, now, err.Error(), now)
}

type source struct {
	Source
	cleanup func()
}

func sourceKey(s Source) string {
	if s.Kind == "node" {
		return "node"
	}
	return s.Grain.ID
}

func sourceTitle(s source) string {
	if s.Kind == "node" {
		return "the node"
	}
	return fmt.Sprintf("%q", s.Grain.Title)
}

// sources is the node itself and every grain. The node's source is a
// consistent copy of the database (VACUUM INTO) and its identity key,
// with the package trees (read-only once installed).
func (s *Service) sources(ctx context.Context) ([]source, error) {
	stage, err := os.MkdirTemp(filepath.Join(s.cfg.Dir, "staging"), "node-*")
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, filepath.Join(stage, "erg.db")); err != nil {
		os.RemoveAll(stage)
		return nil, fmt.Errorf("copy the database: %w", err)
	}
	if s.cfg.Identity != "" {
		b, err := os.ReadFile(s.cfg.Identity)
		if err != nil {
			os.RemoveAll(stage)
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(stage, "identity.key"), b, 0o600); err != nil {
			os.RemoveAll(stage)
			return nil, err
		}
	}
	for _, f := range s.cfg.NodeFiles {
		if b, err := os.ReadFile(f); err == nil {
			os.WriteFile(filepath.Join(stage, filepath.Base(f)), b, 0o600)
		}
	}
	roots := map[string]string{"db": stage}
	if s.cfg.Packages != "" {
		roots["packages"] = s.cfg.Packages
	}
	out := []source{{Source: Source{Kind: "node", Roots: roots}, cleanup: func() { os.RemoveAll(stage) }}}
	gs := s.cfg.Grains.Snapshottable()
	sort.Slice(gs, func(i, j int) bool { return gs[i].ID < gs[j].ID })
	for _, g := range gs {
		id := g.ID
		out = append(out, source{Source: Source{
			Kind: "grain",
			Grain: GrainMeta{ID: g.ID, Owner: g.Owner, AppID: g.AppID, AppName: g.AppName, AppVersion: g.AppVersion,
				Title: g.Title, Created: time.Unix(g.Created, 0).UTC()},
			Roots:  map[string]string{"var": g.Var},
			Freeze: func() (func(), error) { return s.cfg.Grains.Freeze(id) },
		}})
	}
	return out, nil
}
