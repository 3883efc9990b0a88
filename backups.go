package erg

import (
	"context"
	"fmt"
	"time"
)

// BackupStatus is the state of the node's backups (the Backups page,
// `erg backup status`).
type BackupStatus struct {
	// HasCode says whether a recovery code was made: without one there
	// are no keys and nothing is backed up.
	HasCode   bool            `json:"hasCode"`
	Every     Duration        `json:"every"`
	Retention BackupRetention `json:"retention"`
	Running   bool            `json:"running"`
	// Progress says what is under way (a backup run or a restore) and
	// how far it has come, in words; Step in figures.
	Progress     string              `json:"progress,omitempty"`
	Step         *BackupProgress     `json:"step,omitempty"`
	LastRun      time.Time           `json:"lastRun,omitzero"`
	NextRun      time.Time           `json:"nextRun,omitzero"`
	Destinations []BackupDestination `json:"destinations"`
	Sources      []BackupSource      `json:"sources"`
	// Warning is set when backups have failed for more than a day, or
	// have never been made; the main pages show it.
	Warning string `json:"warning,omitempty"`
}

// BackupProgress is how far a backup run or a restore has come: the
// source (a grain, or the node) being worked on, and its files and bytes
// done of the total (for a backup, those that changed since the last run).
type BackupProgress struct {
	What        string `json:"what"`             // "backup" or "restore"
	Source      string `json:"source,omitempty"` // a grain's title, or "This node"
	SourcesDone int    `json:"sourcesDone"`
	Sources     int    `json:"sources"`
	FilesDone   int    `json:"filesDone"`
	Files       int    `json:"files"`
	BytesDone   int64  `json:"bytesDone"`
	Bytes       int64  `json:"bytes"`
}

// String is the progress in words.
func (p BackupProgress) String() string {
	verb := "Backing up"
	if p.What == "restore" {
		verb = "Restoring"
	}
	s := verb
	if p.Source != "" {
		s += " " + p.Source
	}
	if p.Sources > 1 {
		s += fmt.Sprintf(" (%d of %d)", p.SourcesDone+1, p.Sources)
	}
	if p.Files > 0 || p.Bytes > 0 {
		s += fmt.Sprintf(": %d of %d files, %.1f of %.1f MiB", p.FilesDone, p.Files, float64(p.BytesDone)/(1<<20), float64(p.Bytes)/(1<<20))
	}
	return s
}

// BackupRetention is how many snapshots are kept: the last ones, and the
// newest of each day, week and month.
type BackupRetention struct {
	Last    int `json:"last"`
	Daily   int `json:"daily"`
	Weekly  int `json:"weekly"`
	Monthly int `json:"monthly"`
}

// BackupDestination is one place backups go.
type BackupDestination struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`   // "dir" or "friend"
	Target  string    `json:"target"` // the directory, or the friend's peer id
	Name    string    `json:"name"`   // what the user knows it by
	LastOK  time.Time `json:"lastOk,omitzero"`
	Error   string    `json:"error,omitempty"`
	Used    int64     `json:"used"`            // bytes the repository takes there
	Quota   int64     `json:"quota,omitempty"` // bytes a friend offers, when known
	Failing bool      `json:"failing,omitempty"`
}

// BackupSource is one thing backed up: a grain, or the node itself.
type BackupSource struct {
	Source string    `json:"source"` // "node" or the grain id
	Title  string    `json:"title"`
	LastOK time.Time `json:"lastOk,omitzero"`
	Size   int64     `json:"size"`
	Pause  Duration  `json:"pause"`
	Error  string    `json:"error,omitempty"`
}

// BackupSnapshot is one snapshot as the node can list it without the
// recovery code: what of, when, how big, and where it is kept.
type BackupSnapshot struct {
	Name   string    `json:"name"`
	Source string    `json:"source"`
	Title  string    `json:"title,omitempty"`
	Time   time.Time `json:"time"`
	Size   int64     `json:"size"`
	Files  int       `json:"files"`
	At     []string  `json:"at"`
}

// BackupSettings changes the schedule and retention; zero fields stay.
type BackupSettings struct {
	Every     Duration         `json:"every,omitempty"`
	Retention *BackupRetention `json:"retention,omitempty"`
}

// BackupDestinationRequest adds a destination: a directory on this
// machine, or a friend (by name) who offered space.
type BackupDestinationRequest struct {
	Dir    string `json:"dir,omitempty"`
	Friend string `json:"friend,omitempty"`
}

// BackupRestoreRequest restores one grain from its backups.
type BackupRestoreRequest struct {
	Code     string `json:"code"`
	Grain    string `json:"grain"`
	Snapshot string `json:"snapshot,omitempty"` // default the newest
	Over     bool   `json:"over,omitempty"`     // over the grain itself, else as a new grain
}

// BackupRestored says what a restore did.
type BackupRestored struct {
	Grain    Grain     `json:"grain"`
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	Problems []string  `json:"problems,omitempty"`
}

// BackupRun is what one backup run did.
type BackupRun struct {
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished"`
	Sources  int              `json:"sources"`
	Failed   []string         `json:"failed,omitempty"`
	Written  map[string]int64 `json:"written"` // bytes per destination
}

// BackupOffer is space this node keeps for a friend's backups: the
// friend sees it used; this node sees only sizes and dates.
type BackupOffer struct {
	Friend   string    `json:"friend"`
	Peer     string    `json:"peer"`
	Quota    int64     `json:"quota"`
	Used     int64     `json:"used"`
	Modified time.Time `json:"modified,omitzero"`
}

// BackupOfferRequest offers (or, with Bytes 0, withdraws) space to a friend.
type BackupOfferRequest struct {
	Friend string `json:"friend"`
	Bytes  int64  `json:"bytes"`
}

// BackupOffers lists the space offered to friends.
func (c *Client) BackupOffers(ctx context.Context) ([]BackupOffer, error) {
	var o []BackupOffer
	return o, c.do(ctx, "GET", "/api/backups/offers", nil, &o)
}

// OfferBackupSpace lets a friend keep up to req.Bytes of backups on this
// node; 0 withdraws the offer and deletes what was kept.
func (c *Client) OfferBackupSpace(ctx context.Context, req BackupOfferRequest) error {
	return c.do(ctx, "POST", "/api/backups/offers", req, nil)
}

// RecoveryCode is a freshly made recovery code, shown once.
type RecoveryCode struct {
	Code string `json:"code"`
}

// BackupStatus returns the state of the node's backups.
func (c *Client) BackupStatus(ctx context.Context) (BackupStatus, error) {
	var s BackupStatus
	return s, c.do(ctx, "GET", "/api/backups", nil, &s)
}

// BackupNow runs a backup of everything now and waits for it.
func (c *Client) BackupNow(ctx context.Context) (BackupRun, error) {
	var r BackupRun
	return r, c.do(ctx, "POST", "/api/backups/run", nil, &r)
}

// BackupSnapshots lists the snapshots kept at every destination.
func (c *Client) BackupSnapshots(ctx context.Context) ([]BackupSnapshot, error) {
	var s []BackupSnapshot
	return s, c.do(ctx, "GET", "/api/backups/snapshots", nil, &s)
}

// BackupRestore restores a grain from its backups with the recovery code.
func (c *Client) BackupRestore(ctx context.Context, req BackupRestoreRequest) (BackupRestored, error) {
	var r BackupRestored
	return r, c.do(ctx, "POST", "/api/backups/restore", req, &r)
}

// AddBackupDestination adds a place backups go.
func (c *Client) AddBackupDestination(ctx context.Context, req BackupDestinationRequest) (BackupDestination, error) {
	var d BackupDestination
	return d, c.do(ctx, "POST", "/api/backups/destinations", req, &d)
}

// RemoveBackupDestination stops backing up to a destination; what is kept
// there stays.
func (c *Client) RemoveBackupDestination(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/backups/destinations/"+id, nil, nil)
}

// SetBackupSettings changes the schedule or the retention.
func (c *Client) SetBackupSettings(ctx context.Context, s BackupSettings) (BackupStatus, error) {
	var st BackupStatus
	return st, c.do(ctx, "POST", "/api/backups/settings", s, &st)
}

// NewRecoveryCode makes the node's recovery code (again): backups made
// after it can be read only with the new one.
func (c *Client) NewRecoveryCode(ctx context.Context) (RecoveryCode, error) {
	var r RecoveryCode
	return r, c.do(ctx, "POST", "/api/backups/code", nil, &r)
}
