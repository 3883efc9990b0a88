package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"erg"
	"erg/accounts"
	"erg/apitokens"
	"erg/backup"
	"erg/friends"
	"erg/grains"
	"erg/install"
	"erg/powerbox"
	"erg/shares"
	"erg/store"
)

// MaxAPIBody bounds what an API request may send, uploads aside.

// errUnsupportedMedia marks a body of a type the route does not take.
var errUnsupportedMedia = errors.New("unsupported content type")

// api serves the JSON API. Every handler acts for the actor its caller
// put in the request: the owner on the control socket, the token's or the
// session's user over HTTP.
type api struct {
	b         Backend
	acc       *accounts.Service
	st        *store.Service
	fr        *friends.Service
	gr        *grains.Service
	sh        *shares.Service
	tok       *apitokens.Service
	pb        *powerbox.Service
	in        *install.Installer
	bk        *backup.Service
	log       *slog.Logger
	maxUpload int64
	body      bodyGuard
}

// routes lists the API; add new routes here.
func (a *api) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request, erg.User)
	}{
		{"GET /api/status", a.status},
		{"GET /api/me", a.me},
		{"POST /api/me/password", a.changePassword},
		{"GET /api/apps", a.apps},
		{"POST /api/apps", a.installPackage},
		{"DELETE /api/apps/{id}", a.removeApp},
		{"GET /api/grains", a.grains},
		{"POST /api/grains", a.newGrain},
		{"POST /api/grains/restore", a.restoreGrain},
		{"GET /api/grains/{id}", a.grain},
		{"PATCH /api/grains/{id}", a.renameGrain},
		{"PATCH /api/grains/{id}/limits", a.setGrainLimits},
		{"POST /api/grains/{id}/open", a.openGrain},
		{"DELETE /api/grains/{id}", a.removeGrain},
		{"GET /api/grains/{id}/log", a.grainLog},
		{"GET /api/grains/{id}/disk", a.grainDisk},
		{"PUT /api/grains/{id}/disk", a.setGrainDisk},
		{"GET /api/grains/{id}/backup", a.backupGrain},
		{"GET /api/grains/{id}/shares", a.shares},
		{"POST /api/grains/{id}/shares", a.newShare},
		{"DELETE /api/shares/{id}", a.revokeShare},
		{"GET /api/grains/{id}/tokens", a.grainTokens},
		{"POST /api/grains/{id}/tokens", a.newGrainToken},
		{"DELETE /api/grain-tokens/{id}", a.revokeGrainToken},
		{"POST /api/grains/{id}/powerbox/options", a.powerboxOptions},
		{"POST /api/grains/{id}/powerbox/pick", a.powerboxPick},
		{"GET /api/grains/{id}/grants", a.grants},
		{"DELETE /api/grants/{id}", a.revokeGrant},
		{"GET /api/users", a.users},
		{"DELETE /api/users/{name}", a.removeUser},
		{"GET /api/invites", a.invites},
		{"POST /api/invites", a.invite},
		{"DELETE /api/invites/{id}", a.cancelInvite},
		{"GET /api/tokens", a.tokens},
		{"POST /api/tokens", a.newToken},
		{"DELETE /api/tokens/{id}", a.removeToken},
	} {
		h := r.h
		mux.HandleFunc(r.pattern, func(w http.ResponseWriter, req *http.Request) {
			act, ok := actorOf(req)
			if !ok {
				writeError(w, erg.ErrUnauthorized)
				return
			}
			h(w, req, act.user)
		})
	}
	a.registerStore(mux, a.st)
	a.registerFriends(mux, a.fr)
	a.registerBackups(mux, a.bk)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no API route %s %s", erg.ErrNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// guard runs h only for a request that carries an actor and, when
// ownerOnly, only for the node's owner.
func (a *api) guard(forOwner bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		act, ok := actorOf(r)
		if !ok {
			writeError(w, erg.ErrUnauthorized)
			return
		}
		if forOwner {
			if err := ownerOnly(act.user); err != nil {
				writeError(w, err)
				return
			}
		}
		h(w, r)
	}
}

// APIHandler serves the JSON API on the control socket. Whoever can reach
// the socket (the data dir's owner-only unix socket) is the node's owner.
func APIHandler(svc Services, opts Options, log *slog.Logger) http.Handler {
	a := &api{b: svc.Node, acc: svc.Accounts, st: svc.Store, fr: svc.Friends, gr: svc.Grains, sh: svc.Shares, tok: svc.APITokens, pb: svc.Powerbox, in: svc.Installer, bk: svc.Backups, log: log, maxUpload: opts.MaxUpload, body: bodyGuard{stall: opts.BodyStall, rate: opts.MinBodyRate}}
	if a.maxUpload <= 0 {
		a.maxUpload = 1 << 30
	}
	mux := a.routes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owner, err := svc.Accounts.Owner(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		mux.ServeHTTP(w, withActor(r, actor{user: owner}))
	})
}

// httpAPI serves the JSON API on the web port: a bearer token (made with
// `erg token new`) or a web session with its CSRF token in the
// X-CSRF-Token header for anything that changes state.
func (h *Handler) httpAPI() http.Handler {
	a := &api{b: h.b, acc: h.acc, st: h.st, fr: h.fr, gr: h.gr, sh: h.sh, tok: h.tok, pb: h.pb, in: h.in, bk: h.bk, log: h.log, maxUpload: h.maxUpload, body: h.body}
	mux := a.routes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if auth := r.Header.Get("Authorization"); auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok {
				writeError(w, fmt.Errorf("%w: use Authorization: Bearer TOKEN", erg.ErrUnauthorized))
				return
			}
			u, err := h.acc.TokenUser(r.Context(), strings.TrimSpace(token))
			if err != nil {
				writeError(w, err)
				return
			}
			mux.ServeHTTP(w, withActor(r, actor{user: u}))
			return
		}
		act, ok := h.webActor(r)
		if !ok {
			writeError(w, fmt.Errorf("%w: sign in or send an API token (erg token new)", erg.ErrUnauthorized))
			return
		}
		// A session is a browser's, sent by any page it visits: anything
		// that changes state needs the shell's origin and the CSRF header.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := h.checkCSRFHeader(r, act); err != nil {
				writeError(w, err)
				return
			}
		}
		mux.ServeHTTP(w, withActor(r, act))
	})
}

func (a *api) status(w http.ResponseWriter, r *http.Request, who erg.User) {
	if err := ownerOnly(who); err != nil {
		writeError(w, err)
		return
	}
	s, err := a.b.Status(r.Context())
	reply(w, s, err)
}

func (a *api) me(w http.ResponseWriter, r *http.Request, who erg.User) { reply(w, who, nil) }

func (a *api) changePassword(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.PasswordRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	// The new session is for the pages; API callers keep their token.
	_, err := a.acc.ChangePassword(r.Context(), who, req.Current, req.Password)
	reply(w, struct{}{}, err)
}

func (a *api) apps(w http.ResponseWriter, r *http.Request, who erg.User) {
	apps, err := a.in.Apps(r.Context())
	reply(w, apps, err)
}

func ownerOnly(who erg.User) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can do that", erg.ErrForbidden)
	}
	return nil
}

// upload returns the request body bounded by the node's upload limit and
// guarded against trickling. A declared length over the limit is refused
// before a byte is read, so an oversized upload never reaches the disk.
func (a *api) upload(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	if r.ContentLength > a.maxUpload {
		return nil, fmt.Errorf("%w: the upload is %d MiB; the limit is %d MiB", erg.ErrTooLarge, r.ContentLength>>20, a.maxUpload>>20)
	}
	a.body.guard(w, r)
	return http.MaxBytesReader(w, r.Body, a.maxUpload), nil
}

// uploadError turns a body cut off by MaxBytesReader into a clear error.
func uploadError(err error, max int64) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return fmt.Errorf("%w: the upload is larger than the limit of %d MiB", erg.ErrTooLarge, max>>20)
	}
	return err
}

func (a *api) installPackage(w http.ResponseWriter, r *http.Request, who erg.User) {
	if err := ownerOnly(who); err != nil {
		writeError(w, err)
		return
	}
	body, err := a.upload(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if wantsEvents(r) {
		installWithEvents(w, r, func(ctx context.Context, progress erg.InstallProgress) (erg.App, error) {
			return a.in.Upload(ctx, body, progress)
		},
			func(err error) error { return uploadError(err, a.maxUpload) })
		return
	}
	app, err := a.in.Upload(r.Context(), body, nil)
	if err != nil {
		writeError(w, uploadError(err, a.maxUpload))
		return
	}
	w.WriteHeader(http.StatusCreated)
	reply(w, app, nil)
}

func (a *api) removeApp(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.in.Remove(r.Context(), who, r.PathValue("id")))
}

// grains lists the caller's grains, or with ?all=1 every grain on the
// node with its size, for the owner only.
func (a *api) grains(w http.ResponseWriter, r *http.Request, who erg.User) {
	if all := r.URL.Query().Get("all"); all != "" && all != "0" {
		gs, err := a.gr.All(r.Context(), who)
		reply(w, gs, err)
		return
	}
	gs, err := a.b.Grains(r.Context(), who)
	reply(w, gs, err)
}

func (a *api) grain(w http.ResponseWriter, r *http.Request, who erg.User) {
	g, err := a.b.Grain(r.Context(), who, r.PathValue("id"))
	reply(w, g, err)
}

func (a *api) newGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.NewGrainRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	g, err := a.gr.NewGrain(r.Context(), who, req.App, req.Title)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, g, err)
}

func (a *api) renameGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.RenameRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if err := a.gr.Rename(r.Context(), who, id, req.Title); err != nil {
		writeError(w, err)
		return
	}
	g, err := a.b.Grain(r.Context(), who, id)
	reply(w, g, err)
}

// setGrainLimits sets the node owner's limits for a grain (0: back to the
// default) and answers with the grain, its usage and limits.
func (a *api) setGrainLimits(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.GrainLimitsRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if err := setGrainLimits(r.Context(), a.gr, who, id, req); err != nil {
		writeError(w, err)
		return
	}
	g, err := a.gr.ForNodeOwner(r.Context(), who, id)
	reply(w, g, err)
}

func (a *api) openGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	g, err := a.b.OpenGrain(r.Context(), who, r.PathValue("id"))
	reply(w, g, err)
}

func (a *api) removeGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.gr.RemoveGrain(r.Context(), who, r.PathValue("id")))
}

func (a *api) grainLog(w http.ResponseWriter, r *http.Request, who erg.User) {
	log, err := a.gr.Log(r.Context(), who, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(log)
}

func (a *api) backupGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	serveBackup(w, r, a.b, a.gr, a.log, who, r.PathValue("id"))
}

// serveBackup streams a grain's backup zip. The grain is checked before
// the first byte goes out, so a refusal is still a proper error.
func serveBackup(w http.ResponseWriter, r *http.Request, b Backend, gr *grains.Service, log *slog.Logger, who erg.User, id string) {
	g, err := b.Grain(r.Context(), who, id)
	if err == nil && !g.Mine {
		err = fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+backupName(g)+`"`)
	if err := gr.Backup(r.Context(), who, id, w); err != nil {
		// Too late for a status: the client sees a truncated zip.
		log.Error("backup failed", "grain", id, "err", err)
	}
}

// backupName is a safe file name for a grain's backup: letters and digits
// of the title, words joined by '-', and the start of the grain id.
func backupName(g erg.Grain) string {
	var b strings.Builder
	dash := false
	for _, c := range g.Title {
		if b.Len() >= 60 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
		default:
			dash = true
		}
	}
	name := b.String()
	if name == "" {
		name = "grain"
	}
	return name + "-" + g.ID[:min(8, len(g.ID))] + ".zip"
}

func (a *api) restoreGrain(w http.ResponseWriter, r *http.Request, who erg.User) {
	body, err := a.upload(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	g, err := a.gr.Restore(r.Context(), who, body)
	if err != nil {
		writeError(w, uploadError(err, a.maxUpload))
		return
	}
	w.WriteHeader(http.StatusCreated)
	reply(w, g, nil)
}

func (a *api) shares(w http.ResponseWriter, r *http.Request, who erg.User) {
	s, err := a.sh.List(r.Context(), who, r.PathValue("id"))
	reply(w, s, err)
}

func (a *api) newShare(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.ShareRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	s, err := a.sh.New(r.Context(), who, r.PathValue("id"), req)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, s, err)
}

func (a *api) revokeShare(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.sh.Revoke(r.Context(), who, r.PathValue("id")))
}

func (a *api) users(w http.ResponseWriter, r *http.Request, who erg.User) {
	u, err := a.acc.Users(r.Context(), who)
	reply(w, u, err)
}

func (a *api) removeUser(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.b.RemoveUser(r.Context(), who, r.PathValue("name")))
}

func (a *api) invites(w http.ResponseWriter, r *http.Request, who erg.User) {
	inv, err := a.acc.Invites(r.Context(), who)
	reply(w, inv, err)
}

func (a *api) invite(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.InviteRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	inv, err := a.acc.InviteUser(r.Context(), who, req.Username)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, inv, err)
}

func (a *api) cancelInvite(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.acc.CancelInvite(r.Context(), who, r.PathValue("id")))
}

func (a *api) tokens(w http.ResponseWriter, r *http.Request, who erg.User) {
	t, err := a.acc.APITokens(r.Context(), who)
	reply(w, t, err)
}

func (a *api) newToken(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.TokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	t, err := a.acc.NewAPIToken(r.Context(), who, req.Label)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, t, err)
}

func (a *api) removeToken(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.acc.RemoveAPIToken(r.Context(), who, r.PathValue("id")))
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, erg.MaxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", erg.ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: request body: trailing data", erg.ErrInvalid)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// statusOf maps an error to its HTTP status: the web layer's own errors
// first, then the kind of a domain error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errBodyTooSlow):
		return http.StatusRequestTimeout
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	}
	return erg.KindOf(err).HTTPStatus()
}

func writeError(w http.ResponseWriter, err error) {
	code := statusOf(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		msg = "internal error: " + msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(erg.ErrorReply{Error: msg, Kind: erg.KindOf(err)})
}

// parseInt64 reads an optional integer form value.
func parseInt64(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a number", erg.ErrInvalid, s)
	}
	return v, nil
}
