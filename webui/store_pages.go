package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"erg"
	"erg/store"
)

// The Store page: search the app store, look at one listing, install it.
// Anyone signed in may browse; only the owner may install. Installing
// works as a plain form post that waits for the install; store.js turns
// it into a streamed install that shows the download as it goes.

const (
	// updatesTTL is how long a check of the store for newer versions of
	// the installed apps stands before the Apps page starts another in the
	// background; a failed check is retried sooner.
	updatesTTL   = 10 * time.Minute
	updatesRetry = time.Minute
	// updatesWait is how long the Apps page waits for a check when it has
	// no earlier answer to show: a DHT that answers fast gets its marks on
	// the first load, a slow one does not hold the page.
	updatesWait = 750 * time.Millisecond
	// updatesTimeout bounds one check.
	updatesTimeout = 30 * time.Second
	// maxStoreQuery bounds a search's text.
	maxStoreQuery = 200
)

func init() {
	pageFuncs["shortPeer"] = shortPeer
	pageFuncs["storeAction"] = newStoreAction
}

// storeAction is what the "storeAction" template shows for one listing.
type storeAction struct {
	L      erg.Listing
	Owner  bool
	CSRF   string
	Detail bool // the app's own page rather than a search result
}

func newStoreAction(p pageData, l erg.Listing, detail bool) storeAction {
	return storeAction{L: l, Owner: p.Me != nil && p.Me.Owner, CSRF: p.CSRF, Detail: detail}
}

// shortPeer shortens a libp2p peer id for display: its start and its end
// are what people compare.
func shortPeer(id string) string {
	if utf8.RuneCountInString(id) <= 16 {
		return id
	}
	return id[:8] + "…" + id[len(id)-6:]
}

// storePages lists the Store pages when the backend has an app store.
func (h *Handler) storePages() []pageRoute {
	sb := h.st
	h.updates = &updateCache{check: sb.Updates, now: time.Now}
	return []pageRoute{
		{"GET /store", func(w http.ResponseWriter, r *http.Request, a actor) { h.storePage(w, r, sb) }, false},
		{"GET /store/apps/{id}", func(w http.ResponseWriter, r *http.Request, a actor) { h.storeAppPage(w, r, sb) }, false},
		{"POST /store/apps/{id}/install", func(w http.ResponseWriter, r *http.Request, a actor) { h.storeInstall(w, r, a, sb) }, false},
	}
}

// storeData is what the Store page shows.
type storeData struct {
	Query    string
	Searched bool
	Report   erg.SearchReport
}

func (h *Handler) storePage(w http.ResponseWriter, r *http.Request, sb *store.Service) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	d := storeData{Query: q}
	code, errMsg := http.StatusOK, ""
	switch {
	case q == "":
	case len(q) > maxStoreQuery:
		code, errMsg = http.StatusBadRequest, fmt.Sprintf("The search is too long; use at most %d characters.", maxStoreQuery)
	default:
		rep, err := sb.Search(r.Context(), q)
		if err != nil {
			code, errMsg = h.pageError(r, err)
			break
		}
		d.Searched, d.Report = true, rep
	}
	h.render(w, r, code, "store", pageData{Title: "Store", Nav: "store", Data: d, Error: errMsg})
}

// storeAppData is what an app's store page shows. Listing is nil when
// the app could not be looked up.
type storeAppData struct {
	AppID   string
	Listing *erg.Listing
}

func (h *Handler) storeAppPage(w http.ResponseWriter, r *http.Request, sb *store.Service) {
	id := r.PathValue("id")
	l, err := sb.Listing(r.Context(), id)
	if err != nil {
		code, msg := h.pageError(r, err)
		h.renderStoreApp(w, r, code, storeAppData{AppID: id}, msg)
		return
	}
	h.renderStoreApp(w, r, http.StatusOK, storeAppData{AppID: id, Listing: &l}, "")
}

func (h *Handler) renderStoreApp(w http.ResponseWriter, r *http.Request, code int, d storeAppData, errMsg string) {
	title := "Store"
	if d.Listing != nil {
		title = d.Listing.Name
	}
	h.render(w, r, code, "store_app", pageData{Title: title, Nav: "store", Data: d, Error: errMsg})
}

// storeInstall installs or updates an app from the store and waits for
// it: on success the Apps page says so, a refusal is shown on the app's
// store page.
func (h *Handler) storeInstall(w http.ResponseWriter, r *http.Request, a actor, sb *store.Service) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	id := r.PathValue("id")
	app, err := sb.Install(r.Context(), id, nil)
	if err != nil {
		code, msg := h.pageError(r, err)
		d := storeAppData{AppID: id}
		if !errors.Is(err, erg.ErrNotFound) {
			// Show what was refused next to the refusal; the lookup is
			// bounded so a refusal is not followed by a long wait.
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			if l, err := sb.Listing(ctx, id); err == nil {
				d.Listing = &l
			}
			cancel()
		}
		h.renderStoreApp(w, r, code, d, "Not installed: "+msg)
		return
	}
	http.Redirect(w, r, "/apps?installed="+url.QueryEscape(app.ID), http.StatusSeeOther)
}

// pageError is the status and the words a page shows for err, as
// erg.Message spells them. An unexpected error (often the
// network: no peer serves a package) is spelled out to the owner, whose
// node it is, and only pointed at the log for others.
func (h *Handler) pageError(r *http.Request, err error) (int, string) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		h.log.Error("page failed", "path", r.URL.Path, "err", err)
		if a, ok := actorOf(r); ok && a.user.Owner {
			return code, "Something went wrong: " + err.Error()
		}
		return code, "Something went wrong on this node. The node's log says more."
	}
	msg := erg.Message(err)
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return code, msg
}

// installedNotice is the Apps page's message after an install from the
// store redirected there. It names the installed app from the node's own
// list, so a crafted link cannot put words on the page.
func installedNotice(r *http.Request, apps []erg.App) string {
	id := r.URL.Query().Get("installed")
	if id == "" {
		return ""
	}
	for _, a := range apps {
		if a.ID == id {
			return fmt.Sprintf("Installed %s %s from the store.", a.Name, a.DisplayVersion)
		}
	}
	return ""
}

// appUpdates is what the Apps page knows of newer versions in the store.
type appUpdates struct {
	// Store is false when the node has no app store.
	Store bool
	// ByApp maps an installed app's id to its newer listing; never nil.
	ByApp   map[string]*erg.Listing
	Checked time.Time
	Problem string
}

// appUpdates returns the updates to mark on the Apps page from the cached
// check; ?check=1 from the owner checks the store now. (Others get the
// cached answer: a check is a DHT lookup per installed app.)
func (h *Handler) appUpdates(r *http.Request, apps []erg.App) appUpdates {
	u := appUpdates{ByApp: map[string]*erg.Listing{}}
	if h.updates == nil {
		return u
	}
	u.Store = true
	var res updateResult
	if a, ok := actorOf(r); ok && a.user.Owner && r.URL.Query().Get("check") != "" {
		ctx, cancel := context.WithTimeout(r.Context(), updatesTimeout)
		res = h.updates.checkNow(ctx)
		cancel()
	} else {
		res = h.updates.get(r.Context(), updatesWait)
	}
	u.Checked = res.at
	if res.err != nil {
		u.Problem = res.err.Error()
	}
	installed := map[string]int64{}
	for _, a := range apps {
		installed[a.ID] = a.Version
	}
	// The check may predate an install or update: only versions newer
	// than what is installed now are marked.
	for _, l := range res.list {
		if v, ok := installed[l.AppID]; ok && l.Version > v {
			u.ByApp[l.AppID] = &l
		}
	}
	return u
}

// updateCache holds the last answer of StoreUpdates. A page reads it at
// once; a stale answer starts one check in the background, so pages never
// queue on the DHT.
type updateCache struct {
	check func(context.Context) ([]erg.Listing, error)
	now   func() time.Time

	mu      sync.Mutex
	last    updateResult
	running chan struct{} // closed when the check in flight ends; nil if none
}

type updateResult struct {
	list []erg.Listing
	err  error
	at   time.Time // when the check finished; zero if none has
}

// get returns the last answer, starting a check if it is stale. With no
// answer yet it waits up to wait for the check.
func (c *updateCache) get(ctx context.Context, wait time.Duration) updateResult {
	c.mu.Lock()
	last := c.last
	ttl := updatesTTL
	if last.err != nil {
		ttl = updatesRetry
	}
	if !last.at.IsZero() && c.now().Sub(last.at) < ttl {
		c.mu.Unlock()
		return last
	}
	done := c.running
	if done == nil {
		done = make(chan struct{})
		c.running = done
		go c.refresh(done)
	}
	c.mu.Unlock()
	if !last.at.IsZero() {
		return last
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// refresh runs one check on its own deadline, not a page's: a page that
// stops waiting does not waste the check.
func (c *updateCache) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), updatesTimeout)
	defer cancel()
	list, err := c.check(ctx)
	c.mu.Lock()
	c.last = updateResult{list: list, err: err, at: c.now()}
	c.running = nil
	c.mu.Unlock()
	close(done)
}

// checkNow checks the store within ctx and keeps the answer, for someone
// who asked to check now.
func (c *updateCache) checkNow(ctx context.Context) updateResult {
	list, err := c.check(ctx)
	res := updateResult{list: list, err: err, at: c.now()}
	c.mu.Lock()
	c.last = res
	c.mu.Unlock()
	return res
}
