package webui

import (
	"net/http"

	"erg"
	"erg/backup"
)

// registerBackups adds the backup API; everything in it is the owner's.
func (a *api) registerBackups(mux *http.ServeMux, b *backup.Service) {
	owner := func(h func(w http.ResponseWriter, r *http.Request, who erg.User)) http.HandlerFunc {
		return a.guard(true, func(w http.ResponseWriter, r *http.Request) {
			act, _ := actorOf(r)
			h(w, r, act.user)
		})
	}
	mux.HandleFunc("GET /api/backups", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		st, err := b.Status(r.Context())
		reply(w, st, err)
	}))
	mux.HandleFunc("POST /api/backups/run", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		run, err := b.Run(r.Context())
		reply(w, run, err)
	}))
	mux.HandleFunc("GET /api/backups/snapshots", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		s, err := b.Snapshots(r.Context())
		reply(w, s, err)
	}))
	mux.HandleFunc("POST /api/backups/restore", owner(func(w http.ResponseWriter, r *http.Request, who erg.User) {
		var req erg.BackupRestoreRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		res, err := b.RestoreGrain(r.Context(), who, req)
		reply(w, res, err)
	}))
	mux.HandleFunc("POST /api/backups/destinations", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		var req erg.BackupDestinationRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		d, err := b.AddDestination(r.Context(), req)
		reply(w, d, err)
	}))
	mux.HandleFunc("DELETE /api/backups/destinations/{id}", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		reply(w, struct{}{}, b.RemoveDestination(r.Context(), r.PathValue("id")))
	}))
	mux.HandleFunc("POST /api/backups/settings", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		var req erg.BackupSettings
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		if err := b.SetSettings(r.Context(), req); err != nil {
			writeError(w, err)
			return
		}
		st, err := b.Status(r.Context())
		reply(w, st, err)
	}))
	mux.HandleFunc("GET /api/backups/offers", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		o, err := b.Offers(r.Context())
		reply(w, o, err)
	}))
	mux.HandleFunc("POST /api/backups/offers", owner(func(w http.ResponseWriter, r *http.Request, who erg.User) {
		var req erg.BackupOfferRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		var err error
		if req.Bytes == 0 {
			err = b.WithdrawSpace(r.Context(), who, req.Friend)
		} else {
			err = b.OfferSpace(r.Context(), who, req.Friend, req.Bytes)
		}
		reply(w, struct{}{}, err)
	}))
	mux.HandleFunc("POST /api/backups/code", owner(func(w http.ResponseWriter, r *http.Request, _ erg.User) {
		code, err := b.NewCode(r.Context())
		reply(w, erg.RecoveryCode{Code: code}, err)
	}))
}
