// Package powerbox is how grains reach each other with the user's
// consent: a grain's frame asks for a kind of grain, the user picks one of
// the grains they may use (and a role no higher than their own), the
// grain gets a single-use claim, and its server trades the claim through
// its bridge for a durable grant. Every use of a grant is checked against
// what the granting user may still do on both grains, and a grant that
// loses that stops within a second. The bridge (bridge.go) is how a
// sandboxed grain, which has no network, uses its grants.
package powerbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"erg"
	"erg/fedgrains"
	"erg/grains"
)

// Lifetimes and prefixes of the secrets.
const (
	ClaimTTL    = 5 * time.Minute
	ClaimPrefix = "ergclaim_"
	GrantPrefix = "erggrant_"
	// checkEvery is how often grants with open requests are checked
	// again, so one that lost its footing stops within a second.
	checkEvery = 500 * time.Millisecond
)

// Target is a grain a user may use, as the powerbox sees it: one of this
// node's, or a friend's grain served here.
type Target struct {
	ID      string
	Title   string
	AppID   string
	AppName string
	Owner   string
	From    string   // a friend's grain: the friend's node
	Offers  []string // the APIs its app offers
	// Role and Permissions are the user's on it; Roles are the roles the
	// user may grant on it (their own and those with no permission they
	// lack).
	Role        string
	Permissions []string
	Roles       []erg.Role
	// APIPath is where its app serves its API, as the friend's node said
	// for a friend's grain; one without (from an older node, or not
	// restored since) gets requests at the paths they name.
	APIPath string
}

// Config is what the service needs from the node.
type Config struct {
	DB  *sql.DB
	Log *slog.Logger
	// Derive makes a stable identifier from the node's key and parts.
	Derive func(parts ...string) string
	// Grains lists the grains a user may use, the node's and friends';
	// Grain finds one of them (erg.ErrNotFound if the user may not use
	// it, or it is gone).
	Grains func(ctx context.Context, who erg.User) ([]erg.Grain, error)
	Grain  func(ctx context.Context, who erg.User, id string) (erg.Grain, error)
	// Local holds the node's own grains (their apps' roles and offers),
	// Friends what friends' nodes said of the grains they shared.
	Local   *grains.Service
	Friends *fedgrains.Service
	// User finds a local account by id.
	User func(ctx context.Context, id string) (erg.User, error)
	// Owns reports whether who owns a grain of this node's.
	Owns func(who erg.User, grainID string) bool
	// Acquire leases a transport into a grain, local or a friend's; role
	// is the one granted, which a friend's grain is reached with (the
	// owner's node enforces it), while a local grain is told it on each
	// request.
	Acquire func(ctx context.Context, id, role string) (http.RoundTripper, func(), error)
	// RequestRate bounds powerbox requests per user and requesting grain;
	// default 1 a second with bursts of 10.
	RequestRate  rate.Limit
	RequestBurst int
}

// Service is the node's powerbox: claims, grants and their checks.
type Service struct {
	cfg Config
	db  *sql.DB
	log *slog.Logger

	mu       sync.Mutex
	live     map[string]*liveGrant // grants with requests open, by id
	limiters map[string]*rate.Limiter

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	opens atomic.Int64 // Grains opened (Opens)
}

// Opens counts the Grains opened on grants, by either face of the bridge,
// for tests and status.
func (s *Service) Opens() int64 { return s.opens.Load() }

type liveGrant struct {
	ctx    context.Context
	cancel context.CancelFunc
	open   int
}

// New is the powerbox on cfg.DB; Close stops its checks.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestRate <= 0 {
		cfg.RequestRate = 1
	}
	if cfg.RequestBurst <= 0 {
		cfg.RequestBurst = 10
	}
	s := &Service{cfg: cfg, db: cfg.DB, log: cfg.Log, live: map[string]*liveGrant{}, limiters: map[string]*rate.Limiter{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.watch()
	return s
}

// Close stops checking open grants; closing twice is fine.
func (s *Service) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// matches reports whether a target answers a query.
func matches(t Target, q erg.PowerboxQuery) bool {
	switch {
	case q.App != "" && !strings.EqualFold(q.App, t.AppID) && !strings.EqualFold(q.App, t.AppName):
		return false
	case q.API != "" && !slices.Contains(t.Offers, q.API):
		return false
	}
	for _, p := range q.Permissions {
		if !slices.Contains(t.Permissions, p) {
			return false
		}
	}
	return true
}

func checkQuery(q erg.PowerboxQuery) error {
	if (q.App == "") == (q.API == "") {
		return fmt.Errorf("%w: a powerbox query asks for an app or an API, one of the two", erg.ErrInvalid)
	}
	if len(q.App) > 128 || len(q.API) > 64 || len(q.Permissions) > 32 {
		return fmt.Errorf("%w: the powerbox query is too long", erg.ErrInvalid)
	}
	return nil
}

// Options lists the grains who may pick for a request from the grain
// requester: those that match the query, the requester itself aside.
func (s *Service) Options(ctx context.Context, who erg.User, requester string, q erg.PowerboxQuery) ([]erg.PowerboxOption, error) {
	if err := checkQuery(q); err != nil {
		return nil, err
	}
	if _, err := s.target(ctx, who, requester); err != nil {
		return nil, err
	}
	ts, err := s.targets(ctx, who)
	if err != nil {
		return nil, err
	}
	out := []erg.PowerboxOption{}
	for _, t := range ts {
		if t.ID == requester || !matches(t, q) {
			continue
		}
		out = append(out, erg.PowerboxOption{GrainID: t.ID, Title: t.Title, AppName: t.AppName, Owner: t.Owner, From: t.From, Roles: t.Roles})
	}
	return out, nil
}

// allow counts a powerbox request of who's from one grain.
func (s *Service) allow(who erg.User, requester string) bool {
	key := who.ID + "\x00" + requester
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[key]
	if l == nil {
		if len(s.limiters) > 10000 {
			clear(s.limiters) // a crude bound; a full limiter costs only a wait
		}
		l = rate.NewLimiter(s.cfg.RequestRate, s.cfg.RequestBurst)
		s.limiters[key] = l
	}
	return l.Allow()
}

// Pick records who's answer to a request from the grain requester and
// returns the claim for the grain's frame: single-use, good for
// ClaimTTL, and only for requester's server.
func (s *Service) Pick(ctx context.Context, who erg.User, requester string, p erg.PowerboxPick) (string, error) {
	if !s.allow(who, requester) {
		return "", fmt.Errorf("%w: too many powerbox requests from this grain; wait a moment", erg.ErrTooMany)
	}
	if _, err := s.target(ctx, who, requester); err != nil {
		return "", err
	}
	if s.ownerOf(ctx, requester) == "" {
		// A friend's grain runs on its own node, with that node's bridge.
		return "", fmt.Errorf("%w: only a grain of this node's can ask this node's powerbox", erg.ErrInvalid)
	}
	if p.Target == requester {
		return "", fmt.Errorf("%w: a grain cannot be granted to itself", erg.ErrInvalid)
	}
	t, err := s.target(ctx, who, p.Target)
	if err != nil {
		return "", err
	}
	if !slices.ContainsFunc(t.Roles, func(r erg.Role) bool { return r.Name == p.Role }) {
		return "", fmt.Errorf("%w: you cannot grant the role %q on %s", erg.ErrForbidden, p.Role, t.Title)
	}
	label := strings.TrimSpace(p.Label)
	if len(label) > 100 {
		return "", fmt.Errorf("%w: the label is longer than 100 characters", erg.ErrInvalid)
	}
	claim := ClaimPrefix + grains.RandomToken()
	now := time.Now()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO powerbox_claims (hash, requester, user_id, target, role, label, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		grains.HashToken(claim), requester, who.ID, t.ID, p.Role, label, now.Add(ClaimTTL).Unix()); err != nil {
		return "", fmt.Errorf("powerbox claim: %w", err)
	}
	s.db.ExecContext(ctx, `DELETE FROM powerbox_claims WHERE expires_at <= ?`, now.Unix())
	return claim, nil
}

// ownerOf is the owner of a grain of this node's, or "".
func (s *Service) ownerOf(ctx context.Context, grainID string) string {
	var owner string
	s.db.QueryRowContext(ctx, `SELECT owner_id FROM grains WHERE id = ?`, grainID).Scan(&owner)
	return owner
}

var errBadClaim = fmt.Errorf("%w: this claim is unknown, was used already, has expired, or is for another grain", erg.ErrForbidden)

// Claim trades a claim for a durable grant. requester is the grain whose
// bridge the claim came through, which the node, not the grain, knows:
// a claim made for one grain is no good to another.
func (s *Service) Claim(ctx context.Context, requester, claim, label string) (erg.Grant, error) {
	if !strings.HasPrefix(claim, ClaimPrefix) || len(claim) > 200 {
		return erg.Grant{}, errBadClaim
	}
	var userID, target, role, pickLabel string
	// Deleting is the claiming: of two racing claims exactly one wins.
	// A claim sent by the wrong grain is spent too: it leaked.
	var claimedBy string
	err := s.db.QueryRowContext(ctx, `DELETE FROM powerbox_claims WHERE hash = ? AND expires_at > ? RETURNING requester, user_id, target, role, label`,
		grains.HashToken(claim), time.Now().Unix()).Scan(&claimedBy, &userID, &target, &role, &pickLabel)
	if errors.Is(err, sql.ErrNoRows) {
		return erg.Grant{}, errBadClaim
	}
	if err != nil {
		return erg.Grant{}, err
	}
	if claimedBy != requester {
		s.log.Warn("powerbox claim presented by another grain", "claim_for", claimedBy, "presented_by", requester)
		return erg.Grant{}, errBadClaim
	}
	u, err := s.cfg.User(ctx, userID)
	if err != nil {
		return erg.Grant{}, errBadClaim
	}
	t, err := s.check(ctx, u, requester, target, role)
	if err != nil {
		return erg.Grant{}, err
	}
	if label = strings.TrimSpace(label); label == "" || len(label) > 100 {
		label = pickLabel
	}
	now := time.Now()
	g := erg.Grant{
		ID: "c" + strings.ToLower(grains.NewID()[:16]), Requester: requester, Target: target, TargetTitle: t.Title,
		Role: role, Label: label, User: u.Username, Created: time.Unix(now.Unix(), 0),
		Token: GrantPrefix + grains.RandomToken(),
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO powerbox_grants (id, hash, requester, user_id, target, role, label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, grains.HashToken(g.Token), requester, u.ID, target, role, label, now.Unix()); err != nil {
		return erg.Grant{}, fmt.Errorf("powerbox grant: %w", err)
	}
	s.log.Info("powerbox grant", "grant", g.ID, "from", requester, "to", target, "role", role, "user", u.Username)
	return g, nil
}

// check is what every use of a grant needs: the granting user may still
// use the requesting grain, and still holds the granted role (or one with
// every permission of it) on the target. It returns the target.
func (s *Service) check(ctx context.Context, u erg.User, requester, target, role string) (Target, error) {
	if _, err := s.target(ctx, u, requester); err != nil {
		return Target{}, fmt.Errorf("%w: %s can no longer use the grain that holds this grant", erg.ErrForbidden, u.Username)
	}
	t, err := s.target(ctx, u, target)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %s can no longer use the grain this grant is for", erg.ErrForbidden, u.Username)
	}
	if !slices.ContainsFunc(t.Roles, func(r erg.Role) bool { return r.Name == role }) {
		return Target{}, fmt.Errorf("%w: %s no longer holds the role %q on %s", erg.ErrForbidden, u.Username, role, t.Title)
	}
	return t, nil
}

// Access is what a use of a grant may do.
type Access struct {
	GrantID string
	Target  string
	Role    string
	APIPath string // "" for a friend's grain whose apiPath is not known
	// Viewer is who the target is told is asking: the granting user with
	// the granted role's permissions. Its Session is cancelled when the
	// grant is revoked or stops holding; Release must be called after.
	Viewer erg.Viewer
	// Via is the requesting grain as the target is told of it: an id
	// stable for the pair and meaningless elsewhere.
	Via     string
	Release func()
}

var errBadGrant = fmt.Errorf("%w: no such grant for this grain (it was revoked, or never made)", erg.ErrForbidden)

// Open checks a use of a grant by the grain requester (whose bridge it
// came through).
func (s *Service) Open(ctx context.Context, requester, token string) (Access, error) {
	if !strings.HasPrefix(token, GrantPrefix) || len(token) > 200 {
		return Access{}, errBadGrant
	}
	var id, holder, userID, target, role string
	err := s.db.QueryRowContext(ctx, `SELECT id, requester, user_id, target, role FROM powerbox_grants WHERE hash = ?`,
		grains.HashToken(token)).Scan(&id, &holder, &userID, &target, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return Access{}, errBadGrant
	}
	if err != nil {
		return Access{}, err
	}
	if holder != requester {
		s.log.Warn("powerbox grant presented by another grain", "grant", id, "holder", holder, "presented_by", requester)
		return Access{}, errBadGrant
	}
	u, err := s.cfg.User(ctx, userID)
	if err != nil {
		return Access{}, errBadGrant
	}
	t, err := s.check(ctx, u, requester, target, role)
	if err != nil {
		return Access{}, err
	}
	var perms []string
	for _, r := range t.Roles {
		if r.Name == role {
			perms = r.Permissions
		}
	}
	lctx, release := s.hold(id)
	return Access{
		GrantID: id, Target: target, Role: role, APIPath: t.APIPath,
		Viewer: erg.Viewer{
			UserID: s.cfg.Derive("user-id", u.ID, target), Username: u.Username, Permissions: perms,
			SessionID: s.cfg.Derive("grant", id), Session: lctx, Account: u.ID,
		},
		Via:     s.cfg.Derive("grain", requester, target),
		Release: release,
	}, nil
}

// hold counts an open request on a grant, returning its context.
func (s *Service) hold(id string) (context.Context, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[id]
	if l == nil {
		ctx, cancel := context.WithCancel(context.Background())
		l = &liveGrant{ctx: ctx, cancel: cancel}
		s.live[id] = l
	}
	l.open++
	var once sync.Once
	return l.ctx, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if l.open--; l.open == 0 && s.live[id] == l {
				delete(s.live, id)
				l.cancel()
			}
		})
	}
}

// cut ends the open requests of a grant.
func (s *Service) cut(id string) {
	s.mu.Lock()
	l := s.live[id]
	delete(s.live, id)
	s.mu.Unlock()
	if l != nil {
		l.cancel()
	}
}

// watch checks the grants with open requests again and again, and cuts
// those that no longer hold: the granting user lost a role, a grain went.
func (s *Service) watch() {
	defer close(s.done)
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		ids := make([]string, 0, len(s.live))
		for id := range s.live {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		for _, id := range ids {
			if err := s.stillHolds(context.Background(), id); err != nil {
				s.log.Info("powerbox grant stopped", "grant", id, "why", err)
				s.cut(id)
			}
		}
	}
}

func (s *Service) stillHolds(ctx context.Context, id string) error {
	var requester, userID, target, role string
	err := s.db.QueryRowContext(ctx, `SELECT requester, user_id, target, role FROM powerbox_grants WHERE id = ?`, id).Scan(&requester, &userID, &target, &role)
	if err != nil {
		return errBadGrant
	}
	u, err := s.cfg.User(ctx, userID)
	if err != nil {
		return errBadGrant
	}
	_, err = s.check(ctx, u, requester, target, role)
	return err
}

// List lists the grants a grain holds and those made to it, as far as who
// may see them: the grants they made, and all of those of a grain they
// own.
func (s *Service) List(ctx context.Context, who erg.User, grainID string) ([]erg.Grant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.id, g.requester, g.user_id, u.username, g.target, g.role, g.label, g.created_at
		FROM powerbox_grants g JOIN users u ON u.id = g.user_id WHERE g.requester = ? OR g.target = ? ORDER BY g.created_at, g.id`, grainID, grainID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []erg.Grant{}
	for rows.Next() {
		var g erg.Grant
		var userID string
		var created int64
		if err := rows.Scan(&g.ID, &g.Requester, &userID, &g.User, &g.Target, &g.Role, &g.Label, &created); err != nil {
			return nil, err
		}
		if userID != who.ID && !s.cfg.Owns(who, g.Requester) && !s.cfg.Owns(who, g.Target) {
			continue
		}
		g.Created = time.Unix(created, 0)
		if t, err := s.target(ctx, who, g.Target); err == nil {
			g.TargetTitle = t.Title
		}
		if t, err := s.target(ctx, who, g.Requester); err == nil {
			g.RequesterTitle = t.Title
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Revoke ends a grant: its next use is refused and open ones are cut.
// The user who made it and the owners of either grain may revoke it.
func (s *Service) Revoke(ctx context.Context, who erg.User, id string) error {
	var requester, userID, target string
	err := s.db.QueryRowContext(ctx, `SELECT requester, user_id, target FROM powerbox_grants WHERE id = ?`, id).Scan(&requester, &userID, &target)
	if errors.Is(err, sql.ErrNoRows) || err == nil && userID != who.ID && !s.cfg.Owns(who, requester) && !s.cfg.Owns(who, target) {
		return fmt.Errorf("%w: no grant %q", erg.ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM powerbox_grants WHERE id = ?`, id); err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	s.cut(id)
	s.log.Info("powerbox grant revoked", "grant", id, "by", who.Username)
	return nil
}
