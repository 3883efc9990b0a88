package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"erg/apps/internal/appkit"
)

// Attachments are files in a file drop the list's editor linked through
// the powerbox: the page asks the node's shell for "a grain whose app
// offers erg.files/v1", the user picks one, the page hands the claim it
// got to this server, which trades it through the node's bridge for a
// grant, keeps the grant in /var, and lists and serves the drop's files
// through the bridge with it. The list never sees the drop but through
// the grant, and the drop sees the user who linked it, with the role they
// chose.

const attachFile = "attachments.json"

type attachments struct {
	dir    string
	bridge string // the bridge's base URL, from ERG_BRIDGE_URL; "": none
	client *http.Client

	mu    sync.Mutex
	Grant string `json:"grant"`
	Drop  string `json:"drop"` // the grain id the grant is for
}

func openAttachments(dir, bridge string) (*attachments, error) {
	a := &attachments{dir: dir, bridge: bridge, client: &http.Client{}}
	if err := appkit.LoadJSON(dir, attachFile, a); err != nil {
		return nil, err
	}
	return a, nil
}

// link trades a claim for a grant and keeps it.
func (a *attachments) link(claim string) error {
	if a.bridge == "" {
		return errors.New("this node gives the app no bridge")
	}
	body, _ := json.Marshal(map[string]string{"claim": claim, "label": "to-do attachments"})
	resp, err := a.client.Post(a.bridge+"/_erg/claim", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer resp.Body.Close()
	var g struct {
		Token  string `json:"token"`
		Target string `json:"target"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&g); err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("the node refused the claim: %s", g.Error)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Grant, a.Drop = g.Token, g.Target
	return appkit.SaveJSON(a.dir, attachFile, a)
}

// get asks the linked drop for path through the bridge.
func (a *attachments) get(r *http.Request, path string) (*http.Response, error) {
	a.mu.Lock()
	grant := a.Grant
	a.mu.Unlock()
	if grant == "" || a.bridge == "" {
		return nil, errNoDrop
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", a.bridge+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+grant)
	return a.client.Do(req)
}

var errNoDrop = errors.New("no file drop is linked")

func (app *app) linkAttachments(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Claim string `json:"claim"`
	}
	if !readJSON(w, r, &req, `The body must be JSON like {"claim":"…"}.`) {
		return
	}
	if err := app.attach.link(req.Claim); err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (app *app) listAttachments(w http.ResponseWriter, r *http.Request) {
	resp, err := app.attach.get(r, "/api/files")
	if errors.Is(err, errNoDrop) {
		writeJSON(w, http.StatusOK, map[string]any{"linked": false})
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	defer resp.Body.Close()
	var files []json.RawMessage
	if resp.StatusCode != 200 || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&files) != nil {
		writeJSON(w, http.StatusOK, map[string]any{"linked": true, "error": "The file drop refused: " + resp.Status})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"linked": true, "files": files})
}

func (app *app) downloadAttachment(w http.ResponseWriter, r *http.Request) {
	resp, err := app.attach.get(r, "/files/"+url.PathEscape(r.PathValue("name")))
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Disposition"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
