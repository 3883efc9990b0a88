package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"erg"
)

// wantsEvents reports whether the client asked for a stream of progress
// events (one JSON object per line) rather than one reply.
func wantsEvents(r *http.Request) bool {
	return r.Header.Get("Accept") == "application/x-ndjson"
}

// installWithEvents runs install, streaming the steps it reports and then
// its result as JSON lines. Verifying and unpacking are sent as their
// percentage changes; a fetch's steps, which come a few times a second,
// each time, with their figures also in the older Progress form. fail
// maps an install's error to what the client sees.
func installWithEvents(w http.ResponseWriter, r *http.Request, install func(ctx context.Context, progress erg.InstallProgress) (erg.App, error), fail func(error) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	emit := func(ev erg.InstallEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev)
		rc.Flush()
	}
	lastPct := map[string]int64{}
	progress := func(s erg.InstallStep) {
		if s.Phase == erg.PhaseFetching {
			emit(erg.InstallEvent{Step: &s, Progress: &erg.FetchProgress{Bytes: s.Done, Blocks: s.Blocks, Peers: s.Peers, Elapsed: s.Elapsed}})
			return
		}
		pct := int64(100)
		if s.Total > 0 {
			pct = s.Done * 100 / s.Total
		}
		mu.Lock()
		last, ok := lastPct[s.Phase]
		lastPct[s.Phase] = pct
		mu.Unlock()
		if !ok || last != pct {
			emit(erg.InstallEvent{Step: &s})
		}
	}
	app, err := install(r.Context(), progress)
	if err != nil {
		err = fail(err)
		emit(erg.InstallEvent{Error: err.Error(), Kind: erg.KindOf(err)})
		return
	}
	emit(erg.InstallEvent{App: &app})
}
