package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"erg/apps/internal/appkit/appkittest"
)

// TestBinaryStopsOnSIGTERM builds the app as the node runs it, uploads a
// file, and checks that SIGTERM makes it exit 0 with the file in place.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	app := appkittest.Start(t, "FILEDROP_MAX_MB=1")
	base, dir := app.URL, app.Dir
	ct, body := form(part{name: "kept.txt", body: strings.NewReader("kept across exit")})
	if resp, b := do(t, alice, "POST", base+"/upload", ct, body); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	// FILEDROP_MAX_MB=1 is in force.
	ct, body = form(part{name: "big.bin", body: strings.NewReader(strings.Repeat("x", 1<<20+1))})
	if resp, _ := do(t, alice, "POST", base+"/upload", ct, body); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("upload over FILEDROP_MAX_MB: %d", resp.StatusCode)
	}

	app.Stop(t)

	if got, want := dataFiles(t, dir), []string{"files", "files/kept.txt"}; !slices.Equal(got, want) {
		t.Errorf("after exit the data dir holds %v, want %v", got, want)
	}
}

func TestBadEnvironment(t *testing.T) {
	for _, env := range []map[string]string{
		{"PORT": "http"},
		{"PORT": "70000"},
		{"FILEDROP_MAX_MB": "lots"},
		{"FILEDROP_MAX_MB": "0"},
		{"FILEDROP_MAX_MB": "-5"},
	} {
		env["ERG_VAR"] = t.TempDir()
		if err := run(t.Context(), nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("run accepted %v", env)
		}
	}
}
