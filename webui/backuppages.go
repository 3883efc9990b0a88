package webui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"erg"
)

// backupsData is what the Backups page shows.
type backupsData struct {
	Status    erg.BackupStatus
	Snapshots []erg.BackupSnapshot
	Code      string // a recovery code just made, shown once
	Restored  *erg.BackupRestored
}

// backupPages adds the Backups page (the owner's only).
func (h *Handler) backupPages() []pageRoute {
	bk := h.bk
	render := func(w http.ResponseWriter, r *http.Request, code int, d backupsData, notice, errMsg string) {
		st, err := bk.Status(r.Context())
		if err != nil {
			h.failPage(w, r, err)
			return
		}
		snaps, err := bk.Snapshots(r.Context())
		if err != nil {
			h.failPage(w, r, err)
			return
		}
		d.Status, d.Snapshots = st, snaps
		h.render(w, r, code, "backups", pageData{Title: "Backups", Nav: "backups", Notice: notice, Error: errMsg, Data: d})
	}
	owner := func(f func(w http.ResponseWriter, r *http.Request, a actor)) func(w http.ResponseWriter, r *http.Request, a actor) {
		return func(w http.ResponseWriter, r *http.Request, a actor) {
			if err := ownerOnly(a.user); err != nil {
				h.failPage(w, r, err)
				return
			}
			f(w, r, a)
		}
	}
	// fail shows a refusal on the page; anything else is an error page.
	fail := func(w http.ResponseWriter, r *http.Request, err error, what string) {
		for _, k := range []error{erg.ErrInvalid, erg.ErrForbidden, erg.ErrNotFound, erg.ErrConflict, erg.ErrUnavailable, erg.ErrTooLarge} {
			if errors.Is(err, k) {
				render(w, r, statusOf(err), backupsData{}, "", what+": "+erg.Message(err))
				return
			}
		}
		h.failPage(w, r, err)
	}
	return []pageRoute{
		{"GET /backups", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			render(w, r, http.StatusOK, backupsData{}, "", "")
		}), false},
		{"POST /backups/code", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			if err := h.acc.VerifyPassword(r.Context(), a.user, r.PostFormValue("password")); err != nil {
				fail(w, r, err, "No recovery code was made")
				return
			}
			code, err := bk.NewCode(r.Context())
			if err != nil {
				h.failPage(w, r, err)
				return
			}
			render(w, r, http.StatusCreated, backupsData{Code: code}, "", "")
		}), false},
		{"POST /backups/run", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			run, err := bk.Run(r.Context())
			if err != nil {
				fail(w, r, err, "The backup did not run")
				return
			}
			if len(run.Failed) > 0 {
				render(w, r, http.StatusOK, backupsData{}, "", "Parts of the backup failed: "+strings.Join(run.Failed, "; "))
				return
			}
			render(w, r, http.StatusOK, backupsData{}, "Backed up "+strconv.Itoa(run.Sources)+" sources in "+run.Finished.Sub(run.Started).Round(time.Millisecond).String()+".", "")
		}), false},
		{"POST /backups/destinations", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			d, err := bk.AddDestination(r.Context(), erg.BackupDestinationRequest{Dir: strings.TrimSpace(r.PostFormValue("dir")), Friend: strings.TrimSpace(r.PostFormValue("friend"))})
			if err != nil {
				fail(w, r, err, "The destination was not added")
				return
			}
			render(w, r, http.StatusOK, backupsData{}, "Backups now also go to "+d.Name+".", "")
		}), false},
		{"POST /backups/destinations/{id}/remove", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			if err := bk.RemoveDestination(r.Context(), r.PathValue("id")); err != nil {
				fail(w, r, err, "The destination was not removed")
				return
			}
			http.Redirect(w, r, "/backups", http.StatusSeeOther)
		}), false},
		{"POST /backups/settings", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			var in erg.BackupSettings
			hours, err := strconv.ParseFloat(r.PostFormValue("every_hours"), 64)
			if err != nil {
				fail(w, r, erg.ErrInvalid, "The schedule is unchanged: say how many hours between backups")
				return
			}
			in.Every = erg.Duration(time.Duration(hours * float64(time.Hour)))
			var ret erg.BackupRetention
			for _, f := range []struct {
				name string
				to   *int
			}{{"last", &ret.Last}, {"daily", &ret.Daily}, {"weekly", &ret.Weekly}, {"monthly", &ret.Monthly}} {
				if *f.to, err = strconv.Atoi(r.PostFormValue(f.name)); err != nil {
					fail(w, r, erg.ErrInvalid, "The schedule is unchanged: "+f.name+" must be a number")
					return
				}
			}
			in.Retention = &ret
			if err := bk.SetSettings(r.Context(), in); err != nil {
				fail(w, r, err, "The schedule is unchanged")
				return
			}
			render(w, r, http.StatusOK, backupsData{}, "Schedule saved.", "")
		}), false},
		{"POST /backups/restore", owner(func(w http.ResponseWriter, r *http.Request, a actor) {
			grain, snap, _ := strings.Cut(r.PostFormValue("pick"), "/")
			res, err := bk.RestoreGrain(r.Context(), a.user, erg.BackupRestoreRequest{Code: r.PostFormValue("code"),
				Grain: grain, Snapshot: snap, Over: r.PostFormValue("over") == "1"})
			if err != nil {
				fail(w, r, err, "Nothing was restored")
				return
			}
			render(w, r, http.StatusOK, backupsData{Restored: &res}, "Restored "+res.Grain.Title+" as of "+res.Time.Local().Format("2 Jan 2006 15:04")+".", "")
		}), false},
	}
}
