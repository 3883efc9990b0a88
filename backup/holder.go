package backup

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/p2p"
)

// Holder keeps friends' repositories on this node, each in its own
// directory and within the space offered to that friend. It sees sizes
// and dates only: everything it holds was encrypted before it was sent.
type Holder struct {
	db  *sql.DB
	dir string
	log *slog.Logger

	mu   sync.Mutex // serialises puts per holder, so quota checks hold
	used map[string]int64
}

// NewHolder keeps friends' repositories below dir.
func NewHolder(db *sql.DB, dir string, log *slog.Logger) *Holder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Holder{db: db, dir: dir, log: log, used: map[string]int64{}}
}

// Offer lets a friend keep up to quota bytes of backups here.
func (h *Holder) Offer(ctx context.Context, friendPeer string, quota int64) error {
	if _, err := peer.Decode(friendPeer); err != nil {
		return fmt.Errorf("%w: not a peer id", erg.ErrInvalid)
	}
	if quota < 1<<20 || quota > 1<<50 {
		return fmt.Errorf("%w: offer between 1 MiB and a petabyte", erg.ErrInvalid)
	}
	// A new offer starts empty: whatever a withdrawn one left (a put in
	// flight as it ended) is not the friend's to find as a backup.
	var had int
	if err := h.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM backup_offers WHERE peer = ?`, friendPeer).Scan(&had); err != nil {
		return err
	}
	if had == 0 {
		h.mu.Lock()
		delete(h.used, friendPeer)
		h.mu.Unlock()
		if err := os.RemoveAll(h.repoDir(friendPeer)); err != nil {
			return err
		}
	}
	_, err := h.db.ExecContext(ctx, `INSERT INTO backup_offers (peer, quota, created_at) VALUES (?, ?, ?)
		ON CONFLICT (peer) DO UPDATE SET quota = excluded.quota`, friendPeer, quota, time.Now().Unix())
	return err
}

// Withdraw ends an offer and deletes what was kept for the friend.
func (h *Holder) Withdraw(ctx context.Context, friendPeer string) error {
	r, err := h.db.ExecContext(ctx, `DELETE FROM backup_offers WHERE peer = ?`, friendPeer)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: no space is offered to that friend", erg.ErrNotFound)
	}
	h.mu.Lock()
	delete(h.used, friendPeer)
	h.mu.Unlock()
	return os.RemoveAll(h.repoDir(friendPeer))
}

// Offered is one offer with what it holds.
type Offered struct {
	Peer     string    `json:"peer"`
	Quota    int64     `json:"quota"`
	Used     int64     `json:"used"`
	Modified time.Time `json:"modified,omitzero"` // the newest snapshot's arrival
}

// Offers lists the space offered to friends and how much each uses.
func (h *Holder) Offers(ctx context.Context) ([]Offered, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT peer, quota FROM backup_offers ORDER BY created_at`)
	if err != nil {
		return nil, err
	}
	var out []Offered
	for rows.Next() {
		var o Offered
		if err := rows.Scan(&o.Peer, &o.Quota); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, o)
	}
	rows.Close()
	for i := range out {
		d, err := h.repo(out[i].Peer)
		if err != nil {
			continue
		}
		out[i].Used = h.usage(ctx, out[i].Peer, d)
		snaps, _ := d.List(ctx, KindSnapshots)
		for _, s := range snaps {
			if s.Modified.After(out[i].Modified) {
				out[i].Modified = s.Modified
			}
		}
	}
	return out, nil
}

func (h *Holder) repoDir(p string) string { return filepath.Join(h.dir, p) }

func (h *Holder) repo(p string) (*Dir, error) { return OpenDir(h.repoDir(p)) }

func (h *Holder) usage(ctx context.Context, p string, d *Dir) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, ok := h.used[p]; ok {
		return n
	}
	n, _ := Usage(ctx, d)
	h.used[p] = n
	return n
}

// whose finds the repository a remote peer may reach: its own (write),
// or, for a restore peer, the one it restores (read only).
func (h *Holder) whose(ctx context.Context, remote peer.ID) (owner string, quota int64, write bool, err error) {
	err = h.db.QueryRowContext(ctx, `SELECT peer, quota FROM backup_offers WHERE peer = ?`, remote.String()).Scan(&owner, &quota)
	if err == nil {
		return owner, quota, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, err
	}
	err = h.db.QueryRowContext(ctx, `SELECT peer, quota FROM backup_offers WHERE restore_peer = ?`, remote.String()).Scan(&owner, &quota)
	if err != nil {
		return "", 0, false, err
	}
	return owner, quota, false, nil
}

// Serve answers one request on a stream of Protocol.
func (h *Holder) Serve(ns network.Stream) {
	st := p2p.WrapStream(ns, streamIdle)
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	answer := func(rep reply, data []byte) {
		b, _ := json.Marshal(rep)
		if p2p.WriteFrame(st, b) == nil && data != nil {
			st.Write(data)
		}
	}
	refuse := func(code, msg string) { answer(reply{Code: code, Error: msg}, nil) }
	rb, err := st.ReadFrame(maxRequest)
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(rb, &req); err != nil {
		refuse("invalid", "malformed request")
		return
	}
	remote := ns.Conn().RemotePeer()
	owner, quota, write, err := h.whose(ctx, remote)
	if err != nil {
		refuse("no-offer", "this node keeps no backups for you")
		return
	}
	if !write && req.Op != "get" && req.Op != "list" && req.Op != "space" {
		refuse("forbidden", "a restore may only read")
		return
	}
	d, err := h.repo(owner)
	if err != nil {
		h.log.Warn("friend's backup repository", "peer", owner, "err", err)
		refuse("", "this node cannot keep backups now")
		return
	}
	switch req.Op {
	case "space":
		answer(reply{Used: h.usage(ctx, owner, d), Quota: quota}, nil)
	case "hello":
		rp, err := peer.Decode(req.RestorePeer)
		if err != nil {
			refuse("invalid", "bad restore peer")
			return
		}
		h.db.ExecContext(ctx, `UPDATE backup_offers SET restore_peer = ? WHERE peer = ?`, rp.String(), owner)
		answer(reply{Used: h.usage(ctx, owner, d), Quota: quota}, nil)
	case "list":
		objs, err := d.List(ctx, req.Kind)
		if err != nil {
			refuse("invalid", err.Error())
			return
		}
		answer(reply{Objects: objs}, nil)
	case "get":
		b, err := d.Get(ctx, req.Kind, req.Name)
		if errors.Is(err, ErrNotStored) {
			refuse("not-stored", fmt.Sprintf("%s/%s is not kept here", req.Kind, req.Name))
			return
		}
		if err != nil {
			refuse("invalid", err.Error())
			return
		}
		answer(reply{Size: int64(len(b))}, b)
	case "delete":
		old := objectSize(d, req.Kind, req.Name)
		if err := d.Delete(ctx, req.Kind, req.Name); err != nil {
			refuse("invalid", err.Error())
			return
		}
		h.mu.Lock()
		if _, ok := h.used[owner]; ok {
			h.used[owner] -= old
		}
		h.mu.Unlock()
		answer(reply{}, nil)
	case "put":
		h.put(ctx, st, d, owner, quota, req, answer, refuse)
	default:
		refuse("invalid", "unknown request "+req.Op)
	}
}

func (h *Holder) put(ctx context.Context, st *p2p.Stream, d *Dir, owner string, quota int64, req request,
	answer func(reply, []byte), refuse func(code, msg string)) {
	if err := CheckName(req.Kind, req.Name); err != nil {
		refuse("invalid", err.Error())
		return
	}
	if req.Size < 0 || req.Size > maxObject {
		refuse("invalid", fmt.Sprintf("an object may be at most %d bytes", maxObject))
		return
	}
	used := h.usage(ctx, owner, d)
	old := objectSize(d, req.Kind, req.Name)
	if used-old+req.Size > quota {
		refuse("quota", fmt.Sprintf("over the space offered: %s of %s used, this needs %s more", sizeText(used), sizeText(quota), sizeText(req.Size)))
		return
	}
	answer(reply{}, nil) // go ahead
	data := make([]byte, req.Size)
	if _, err := io.ReadFull(st.R, data); err != nil {
		return // cut short: nothing is written
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Check again under the lock: puts of one friend may race.
	if h.used[owner]-old+req.Size > quota {
		refuse("quota", fmt.Sprintf("over the space offered: %s of %s used", sizeText(h.used[owner]), sizeText(quota)))
		return
	}
	if err := d.Put(ctx, req.Kind, req.Name, data); err != nil {
		h.log.Warn("keep a friend's backup", "peer", owner, "err", err)
		refuse("", "this node could not write it")
		return
	}
	h.used[owner] += req.Size - old
	answer(reply{Used: h.used[owner], Quota: quota}, nil)
}

func objectSize(d *Dir, kind, name string) int64 {
	if CheckName(kind, name) != nil {
		return 0
	}
	fi, err := os.Stat(d.path(kind, name))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
