package main

import (
	"net/http"
	"testing"

	"erg/apps/internal/appkit/appkittest"
)

// TestBinaryStopsOnSIGTERM builds the app as the node runs it, saves an
// item, and checks that SIGTERM makes it exit 0 with the item on disk.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	app := appkittest.Start(t)
	base, dir := app.URL, app.Dir
	mustDo(t, alice, http.StatusCreated, "POST", base+"/api/items", `{"text":"Kept across exit"}`)

	app.Stop(t)

	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if its := s.items(nil); len(its) != 1 || its[0].Text != "Kept across exit" {
		t.Errorf("after exit the store holds %+v", its)
	}
}

func TestBadPort(t *testing.T) {
	env := map[string]string{"PORT": "http", "ERG_VAR": t.TempDir()}
	if err := run(t.Context(), nil, func(k string) string { return env[k] }); err == nil {
		t.Error("run accepted PORT=http")
	}
}
