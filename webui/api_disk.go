package webui

import (
	"net/http"

	"erg"
)

// A grain's disk use and bound: its owner (or the node's) may read them,
// only the node's owner may change the bound.

func (a *api) grainDisk(w http.ResponseWriter, r *http.Request, who erg.User) {
	d, err := a.gr.DiskOf(who, r.PathValue("id"))
	reply(w, d, err)
}

func (a *api) setGrainDisk(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.DiskRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if err := a.gr.SetDiskMB(r.Context(), who, id, req.MB); err != nil {
		writeError(w, err)
		return
	}
	d, err := a.gr.DiskOf(who, id)
	reply(w, d, err)
}
