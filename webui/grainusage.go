package webui

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"erg"
	"erg/grains"
)

// maxCPUPercent is grains' bound on a CPU ceiling: 1024 cores' worth.
const maxCPUPercent = 102400

// setGrainLimits applies the node owner's limits for one grain from the
// API's or the settings form's request: a field left out stays as it is,
// 0 goes back to the app's (or the node's) default.
func setGrainLimits(ctx context.Context, gr *grains.Service, who erg.User, id string, req erg.GrainLimitsRequest) error {
	if req.CPUPercent != nil {
		if n := *req.CPUPercent; n < 0 || n > maxCPUPercent {
			return fmt.Errorf("%w: a CPU ceiling is 1 to %d percent of one core, or 0 for the app's or the node's default, not %d", erg.ErrInvalid, maxCPUPercent, n)
		}
		var pct *int
		if *req.CPUPercent != 0 {
			pct = req.CPUPercent
		}
		if err := gr.SetCPUPercent(ctx, who, id, pct); err != nil {
			return err
		}
	}
	return nil
}

// limitsView is what the "limits" template (the settings form) shows.
type limitsView struct {
	Grain erg.Grain
	CSRF  string
	Back  string // the page to go back to
}

// limitsForm reads the settings form's fields into a request. The form
// shows the values set, so an empty field is 0: back to the default.
func limitsForm(r *http.Request) (erg.GrainLimitsRequest, error) {
	var req erg.GrainLimitsRequest
	n := 0
	if v := strings.TrimSpace(r.PostFormValue("cpuPercent")); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return req, fmt.Errorf("%w: a CPU ceiling is a whole number of percent of one core, not %q", erg.ErrInvalid, v)
		}
	}
	req.CPUPercent = &n
	return req, nil
}

// diskForm reads the settings form's disk bound in MiB: nil (empty or 0)
// goes back to the app's or the node's.
func diskForm(r *http.Request) (*int, error) {
	v := strings.TrimSpace(r.PostFormValue("diskMB"))
	if v == "" || v == "0" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("%w: a disk bound is a whole number of MiB, not %q", erg.ErrInvalid, v)
	}
	return &n, nil
}

// setLimitsPage is the settings form's POST, for the node's owner: it
// sets the limits and goes back to the page it came from.
func (h *Handler) setLimitsPage(w http.ResponseWriter, r *http.Request, a actor) {
	req, err := limitsForm(r)
	var diskMB *int
	if err == nil {
		diskMB, err = diskForm(r)
	}
	if err == nil {
		err = setGrainLimits(r.Context(), h.gr, a.user, r.PathValue("id"), req)
	}
	if err == nil && r.Form.Has("diskMB") {
		err = h.gr.SetDiskMB(r.Context(), a.user, r.PathValue("id"), diskMB)
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	back := r.PostFormValue("back")
	if back != "/grains" {
		back = "/users"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// usageLine is a grain's usage and limits in one line for a person.
func usageLine(u *erg.GrainUsage) string {
	if u == nil {
		return ""
	}
	var parts []string
	if u.Measured {
		parts = append(parts, "CPU "+strconv.FormatFloat(u.CPUSeconds, 'f', 2, 64)+" s")
	} else {
		parts = append(parts, "not run since the node started")
	}
	mem := "memory"
	if u.MemoryBytes > 0 {
		mem += " " + FormatSize(u.MemoryBytes)
	}
	if u.MemoryLimitBytes > 0 {
		mem += " of " + FormatSize(u.MemoryLimitBytes)
	} else {
		mem += ", no limit"
	}
	if u.MemoryPeakBytes > 0 {
		mem += " (peak " + FormatSize(u.MemoryPeakBytes) + ")"
	}
	disk := "disk " + FormatSize(u.DiskBytes)
	if u.DiskLimitBytes > 0 {
		disk += " of " + FormatSize(u.DiskLimitBytes)
	}
	parts = append(parts, mem, disk)
	if u.CPUPercent > 0 {
		parts = append(parts, "CPU ceiling "+strconv.Itoa(u.CPUPercent)+"%")
	} else {
		parts = append(parts, "no CPU ceiling")
	}
	return strings.Join(parts, " · ")
}
