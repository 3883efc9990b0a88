package webui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
)

// InstallProgress hears how an install goes: phase is "verifying" or
// "unpacking", with the bytes done so far and the total.
type InstallProgress func(phase string, done, total int64)

type installProgressKey struct{}

// WithInstallProgress returns a context that carries p to the Backend's
// InstallPackage, so the API can show a long install's progress without
// every Backend method taking a callback.
func WithInstallProgress(ctx context.Context, p InstallProgress) context.Context {
	return context.WithValue(ctx, installProgressKey{}, p)
}

// InstallProgressFrom returns the progress callback in ctx, or one that
// does nothing.
func InstallProgressFrom(ctx context.Context) InstallProgress {
	if p, ok := ctx.Value(installProgressKey{}).(InstallProgress); ok && p != nil {
		return p
	}
	return func(string, int64, int64) {}
}

// InstallStep is one progress event of a package install.
type InstallStep struct {
	Phase string `json:"phase"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// wantsEvents reports whether the client asked for a stream of progress
// events (one JSON object per line) rather than one reply.
func wantsEvents(r *http.Request) bool {
	return r.Header.Get("Accept") == "application/x-ndjson"
}

// installWithEvents runs install, streaming its progress and then its
// result as JSON lines: the phases of the package install itself (through
// the context) and whatever install emits on its own, such as a store
// fetch's progress. fail maps an install's error to what the client sees.
func installWithEvents(w http.ResponseWriter, r *http.Request, install func(ctx context.Context, emit func(installEvent)) (App, error), fail func(error) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	emit := func(ev installEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev)
		rc.Flush()
	}
	lastPct := map[string]int64{}
	ctx := WithInstallProgress(r.Context(), func(phase string, done, total int64) {
		pct := int64(100)
		if total > 0 {
			pct = done * 100 / total
		}
		mu.Lock()
		last, ok := lastPct[phase]
		lastPct[phase] = pct
		mu.Unlock()
		if !ok || last != pct {
			emit(installEvent{Step: &InstallStep{Phase: phase, Done: done, Total: total}})
		}
	})
	app, err := install(ctx, emit)
	if err != nil {
		err = fail(err)
		emit(installEvent{Error: err.Error(), Kind: errorKind(err)})
		return
	}
	emit(installEvent{App: &app})
}

// InstallPackageProgress is InstallPackage that reports the node's
// verifying and unpacking as they go.
func (c *Client) InstallPackageProgress(ctx context.Context, pkg io.Reader, progress func(InstallStep)) (App, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/apps", pkg)
	if err != nil {
		return App{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.erg.package")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return App{}, err
	}
	defer resp.Body.Close()
	return readInstallEvents(resp.Body, func(ev installEvent) {
		if ev.Step != nil && progress != nil {
			progress(*ev.Step)
		}
	})
}
