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

// installWithEvents runs install, streaming its progress and then its
// result as JSON lines: the phases of the package install itself (through
// the context) and whatever install emits on its own, such as a store
// fetch's progress. fail maps an install's error to what the client sees.
func installWithEvents(w http.ResponseWriter, r *http.Request, install func(ctx context.Context, emit func(erg.InstallEvent)) (erg.App, error), fail func(error) error) {
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
	ctx := erg.WithInstallProgress(r.Context(), func(phase string, done, total int64) {
		pct := int64(100)
		if total > 0 {
			pct = done * 100 / total
		}
		mu.Lock()
		last, ok := lastPct[phase]
		lastPct[phase] = pct
		mu.Unlock()
		if !ok || last != pct {
			emit(erg.InstallEvent{Step: &erg.InstallStep{Phase: phase, Done: done, Total: total}})
		}
	})
	app, err := install(ctx, emit)
	if err != nil {
		err = fail(err)
		emit(erg.InstallEvent{Error: err.Error(), Kind: erg.KindOf(err)})
		return
	}
	emit(erg.InstallEvent{App: &app})
}
