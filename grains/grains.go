// Package grains is the node's grains: the registry of grains and their
// apps, their lifecycle in sandboxes (start on demand, idle stop,
// single-flight starts), sessions and one-time logins on grain origins,
// package-tree GC, per-grain logs, backups and restores.
package grains

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"erg"
	"erg/apppkg"
	"erg/sandbox"
)

// Config is what the service needs from the node.
type Config struct {
	DB          *sql.DB
	Runner      *sandbox.Runner
	Dir         string      // the grains' storage: Dir/<id>/var
	PackagesDir string      // where installed package trees live, for their GC
	TempDir     string      // where uploads wait to be unpacked
	InstallLock sync.Locker // held by installs; package GC takes it too
	Idle        time.Duration
	Log         *slog.Logger
	// Derive makes a stable identifier from the node's key and parts.
	Derive func(parts ...string) string
	// Usernames maps account ids to usernames (package accounts).
	Usernames func(ctx context.Context) (map[string]string, error)
	// Origin is the base URL of a grain's origin on this node.
	Origin func(id string) string
	// CPUPercent is the CPU ceiling of grains whose app sets none, in
	// percent of one core; 0 means none.
	CPUPercent int
	// Disk bounds what grains keep (disk.go).
	Disk DiskConfig
	// Bridge, if set, serves a grain's bridge (package powerbox) on the
	// listeners its sandbox opens on its loopback (bridge.go).
	Bridge func(grainID string) http.Handler
	// BridgeConn, if set, serves a connection to a grain's bridge socket
	// (Cap'n Proto: fed.Bridge) until it closes.
	BridgeConn func(grainID string, c net.Conn)
}

// Service is the node's grains.
type Service struct {
	cfg      Config
	log      *slog.Logger
	db       *sql.DB
	manager  *manager
	trees    treeRefs // package trees in use by running grains
	bg       sync.WaitGroup
	sessions *Sessions

	uidMu sync.Mutex // serialises uid allocation (uids.go)
	disk  diskState  // disk.go
	use   usageState // usage.go

	mu           sync.RWMutex
	cache        map[string]*Info // every grain, by id
	restoreLimit int64            // bytes one restore unpacks
}

// Info is the in-memory copy of a grain's row and its app, so the proxy's
// hot path reads no database. Its fields are guarded by its service's mu.
type Info struct {
	s        *Service
	id       string
	appID    string
	ownerID  string
	title    string
	created  time.Time
	lastUsed time.Time
	app      *apppkg.Manifest
	tree     string
	uid      uint32 // host uid of its sandbox (uids.go); 0 until known
	// cpuPercent is the node owner's CPU ceiling for this grain, if they
	// set one (limits.go); 0 is none at all.
	cpuPercent *int
	// diskMB is the node owner's bound on this grain's /var, if they set
	// one (disk.go).
	diskMB *int
}

// ID is the grain's id.
func (g *Info) ID() string { return g.id }

// OwnerID is the grain's owner's account id.
func (g *Info) OwnerID() string {
	g.s.mu.RLock()
	defer g.s.mu.RUnlock()
	return g.ownerID
}

// App is the manifest of the grain's app.
func (g *Info) App() *apppkg.Manifest {
	g.s.mu.RLock()
	defer g.s.mu.RUnlock()
	return g.app
}

// Title is the grain's title.
func (g *Info) Title() string {
	g.s.mu.RLock()
	defer g.s.mu.RUnlock()
	return g.title
}

// New loads the grains recorded in the database and starts their manager.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.CPUPercent < 0 || cfg.CPUPercent > maxCPUPercent {
		return nil, fmt.Errorf("%w: the grains' CPU ceiling is 0 (none) to %d percent of one core, not %d", erg.ErrInvalid, maxCPUPercent, cfg.CPUPercent)
	}
	s := &Service{cfg: cfg, log: cfg.Log, db: cfg.DB, cache: map[string]*Info{}, restoreLimit: defaultRestoreLimit,
		sessions: NewSessions(cfg.DB)}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	if err := s.initDisk(); err != nil {
		return nil, err
	}
	s.manager = newManager(cfg.Runner, cfg.Idle, cfg.Log, s)
	s.startDiskWatch()
	s.startUsage()
	return s, nil
}

// Sessions is the table of sessions and one-time logins on grain origins,
// which friends' grains served here share.
func (s *Service) Sessions() *Sessions { return s.sessions }

// Close stops every grain and waits for them and for package GC.
func (s *Service) Close() {
	s.stopDiskWatch()
	s.stopUsage()
	s.manager.close()
	s.bg.Wait()
	s.unmountAll()
}

func (s *Service) load(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT g.id, g.app_id, g.owner_id, g.title, g.created_at, g.last_used, a.manifest, a.tree, l.cpu_percent, l.disk_mb
		FROM grains g JOIN apps a ON a.id = g.app_id LEFT JOIN grain_limits l ON l.grain_id = g.id`)
	if err != nil {
		return fmt.Errorf("load grains: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		g := Info{s: s}
		var created, used int64
		var manifest string
		var cpu, disk sql.NullInt64
		if err := rows.Scan(&g.id, &g.appID, &g.ownerID, &g.title, &created, &used, &manifest, &g.tree, &cpu, &disk); err != nil {
			return fmt.Errorf("load grains: %w", err)
		}
		if err := json.Unmarshal([]byte(manifest), &g.app); err != nil {
			return fmt.Errorf("load grains: app %s: %w", g.appID, err)
		}
		g.created, g.lastUsed = time.Unix(created, 0), time.Unix(used, 0)
		if cpu.Valid {
			v := int(cpu.Int64)
			g.cpuPercent = &v
		}
		if disk.Valid {
			v := int(disk.Int64)
			g.diskMB = &v
		}
		s.cache[g.id] = &g
	}
	return rows.Err()
}

// Lookup finds a grain of this node's.
func (s *Service) Lookup(id string) (*Info, error) {
	s.mu.RLock()
	g := s.cache[id]
	s.mu.RUnlock()
	if g == nil {
		return nil, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, nil
}

// Own returns a grain only to its owner. Anyone else is told it does
// not exist, so ids cannot be probed.
func (s *Service) Own(who erg.User, id string) (*Info, error) {
	g, err := s.Lookup(id)
	if err != nil {
		return nil, err
	}
	if g.OwnerID() != who.ID {
		return nil, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, nil
}

// Access finds how a user may use a grain: as its owner, or through the
// share they hold that grants the most.
func (s *Service) Access(ctx context.Context, who erg.User, id string) (g *Info, role, shareID string, err error) {
	g, err = s.Lookup(id)
	if err != nil {
		return nil, "", "", err
	}
	s.mu.RLock()
	owner, m := g.ownerID, g.app
	s.mu.RUnlock()
	if owner == who.ID {
		return g, m.OwnerRole, "", nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.role FROM share_holders h JOIN shares s ON s.id = h.share_id
		WHERE h.user_id = ? AND h.grain_id = ? AND (s.expires_at = 0 OR s.expires_at > ?)`, who.ID, id, time.Now().Unix())
	if err != nil {
		return nil, "", "", err
	}
	defer rows.Close()
	best := -1
	for rows.Next() {
		var sid, r string
		if err := rows.Scan(&sid, &r); err != nil {
			return nil, "", "", err
		}
		rl, _ := m.Role(r)
		if len(rl.Permissions) > best {
			best, role, shareID = len(rl.Permissions), r, sid
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", "", err
	}
	if best < 0 {
		return nil, "", "", fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	return g, role, shareID, nil
}

// Dir is where a grain's storage lives; its /var is Dir(id)/var.
func (s *Service) Dir(id string) string { return filepath.Join(s.cfg.Dir, id) }

// RunSpec tells the grain manager how to start a grain right now.
func (s *Service) RunSpec(id string) (RunSpec, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.cache[id]
	if g == nil {
		return RunSpec{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	m := g.app
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=/var",
		"TMPDIR=/tmp",
		fmt.Sprintf("PORT=%d", m.Port),
	}
	env = append(env, m.Env...)
	var rs RunSpec
	rs.Name = "g-" + id
	rs.Root = g.tree
	rs.Var = filepath.Join(s.Dir(id), "var")
	rs.Args = m.Command
	rs.Env = env
	rs.Limits.MemoryBytes = int64(m.Limits.MemoryMB) << 20
	rs.Limits.Pids = m.Limits.Pids
	rs.Limits.CPUPercent = s.cfg.CPUPercent
	if m.Limits.CPUPercent > 0 {
		rs.Limits.CPUPercent = m.Limits.CPUPercent
	}
	if g.cpuPercent != nil { // the node owner's choice for this grain
		rs.Limits.CPUPercent = *g.cpuPercent
	}
	rs.UID = g.uid
	rs.Port = m.Port
	if s.cfg.Bridge != nil && m.Port != BridgePort {
		rs.Bridge = BridgePort
		rs.Env = append(rs.Env, bridgeEnv...)
	}
	return rs, nil
}

// touchGrain records when a grain was last used. It is called when a
// grain starts and stops, not per request, so requests never wait on a
// database write.
func (s *Service) touchGrain(id string, t time.Time) {
	s.mu.Lock()
	if g := s.cache[id]; g != nil {
		g.lastUsed = t
	}
	s.mu.Unlock()
	if _, err := s.db.Exec(`UPDATE grains SET last_used = ? WHERE id = ?`, t.Unix(), id); err != nil {
		s.log.Warn("record grain use", "grain", id, "err", err)
	}
}

// Count is how many grains the node has.
func (s *Service) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cache)
}

// OwnedBy lists the ids of an account's grains.
func (s *Service) OwnedBy(accountID string) []string {
	var ids []string
	s.mu.RLock()
	for id, g := range s.cache {
		if g.ownerID == accountID {
			ids = append(ids, id)
		}
	}
	s.mu.RUnlock()
	return ids
}

// AppRecorded points the cached grains of an app at its new tree for
// their next start.
func (s *Service) AppRecorded(m *apppkg.Manifest, tree string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.cache {
		if g.appID == m.ID {
			g.app = m
			g.tree = tree
		}
	}
}

// ToAPI is a grain as who sees it, in the role given (or, for its owner,
// the owner's role); names maps account ids to usernames.
func (s *Service) ToAPI(g *Info, who erg.User, role string, names map[string]string) erg.Grain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if role == "" && g.ownerID == who.ID {
		role = g.app.OwnerRole
	}
	return erg.Grain{
		ID: g.id, AppID: g.appID, AppName: g.app.Name, Title: g.title, Owner: names[g.ownerID],
		Mine: g.ownerID == who.ID, Role: role,
		Created: g.created, LastUsed: g.lastUsed, Running: s.manager.running(g.id),
	}
}

// Local lists this node's grains who owns or holds a share of, unsorted.
func (s *Service) Local(ctx context.Context, who erg.User) ([]erg.Grain, error) {
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return nil, err
	}
	var mine []*Info
	s.mu.RLock()
	for _, g := range s.cache {
		if g.ownerID == who.ID {
			mine = append(mine, g)
		}
	}
	s.mu.RUnlock()
	out := make([]erg.Grain, 0, len(mine))
	for _, g := range mine {
		out = append(out, s.withUsage(s.ToAPI(g, who, "", names), g, who))
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT grain_id FROM share_holders WHERE user_id = ?`, who.ID)
	if err != nil {
		return nil, err
	}
	var shared []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		shared = append(shared, id)
	}
	rows.Close()
	for _, id := range shared {
		g, role, _, err := s.Access(ctx, who, id)
		if errors.Is(err, erg.ErrNotFound) {
			continue // every share they held has expired
		}
		if err != nil {
			return nil, err
		}
		if g.OwnerID() != who.ID {
			out = append(out, s.ToAPI(g, who, role, names))
		}
	}
	return out, nil
}

// Acquire returns a transport into a running grain, starting it first if
// needed. release must be called once the request is over.
func (s *Service) Acquire(ctx context.Context, id string) (http.RoundTripper, func(), error) {
	return s.manager.acquire(ctx, id)
}

// Running reports whether a grain's sandbox runs.
func (s *Service) Running(id string) bool { return s.manager.running(id) }

// RunningCount is how many grains run.
func (s *Service) RunningCount() int { return s.manager.runningCount() }

// Stop stops one grain if it runs and waits until it has.
func (s *Service) Stop(ctx context.Context, id, why string) error {
	return s.manager.stop(ctx, id, why)
}

// Starts counts the sandboxes started, for tests and status.
func (s *Service) Starts() int64 { return s.manager.starts.Load() }

// SandboxOf returns the running sandbox of a grain, for tests and
// benchmarks.
func (s *Service) SandboxOf(id string) *sandbox.Sandbox { return s.manager.sandboxOf(id) }

// RunningRoot is the package tree a grain's running sandbox has, or "".
func (s *Service) RunningRoot(id string) string {
	if run := s.manager.current(id); run != nil {
		return run.root
	}
	return ""
}

// SetRestoreLimit bounds the bytes one restore unpacks.
func (s *Service) SetRestoreLimit(n int64) {
	s.mu.Lock()
	s.restoreLimit = n
	s.mu.Unlock()
}

// RandomToken is a new secret for a link or session.
func RandomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is what the database keeps of a secret token.
func HashToken(t string) string {
	var b hashBuf
	return string(hashToken(&b, t))
}

// hashBuf holds a token's hash in hex.
type hashBuf [sha256.Size * 2]byte

// hashToken writes HashToken(t) into b and returns it, allocating
// nothing for a token of up to 64 bytes (every token RandomToken makes):
// a lookup by it, m[string(b)], costs none either.
func hashToken(b *hashBuf, t string) []byte {
	var sum [sha256.Size]byte
	if len(t) <= len(b) {
		n := copy(b[:], t) // a copy on the stack, which []byte(t) is not past 32 bytes
		sum = sha256.Sum256(b[:n])
	} else {
		sum = sha256.Sum256([]byte(t))
	}
	hex.Encode(b[:], sum[:])
	return b[:]
}
