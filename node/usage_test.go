package node

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"erg"
)

// TestCLIGrainUsageAndLimits: through a real `erg run`, a probe grain
// that holds 40 MiB and spins shows it in `erg grain ls --json` (the
// API's JSON, camelCase, CPU in seconds) and in the table; the owner sets
// and clears its CPU ceiling with `erg grain limits`, bad values are
// refused and change nothing; another user sees usage of their own grains
// only, and may not set limits.
func TestCLIGrainUsageAndLimits(t *testing.T) {
	p := startErg(t, t.TempDir())
	var g erg.Grain
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "new", "probe", "--title", "hog", "--json")), &g); err != nil {
		t.Fatal(err)
	}
	visitor, _ := ergWeb(t, p)
	if code, body := visitor.get(g.URL); code != http.StatusSeeOther && code != http.StatusOK {
		t.Fatalf("login to the grain: %d %s", code, body)
	}
	origin := strings.Split(g.URL, "/_erg")[0]
	for _, path := range []string{"/memhog?mb=40&keep=1", "/spin?ms=400&threads=1"} {
		if code, body := visitor.get(origin + path); code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
	}

	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "ls", "--json")), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("grain ls --json: %v %d", err, len(raw))
	}
	var fields map[string]any
	if err := json.Unmarshal(raw[0]["usage"], &fields); err != nil {
		t.Fatalf("no usage in %s", raw[0]["usage"])
	}
	for _, k := range []string{"measured", "cpuSeconds", "memoryBytes", "memoryLimitBytes", "processes", "processLimit", "diskBytes", "cpuPercent"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("usage has no %q: %v", k, fields)
		}
	}
	if mem, _ := fields["memoryBytes"].(float64); mem < 40<<20 {
		t.Errorf("holding 40 MiB, memoryBytes = %v", fields["memoryBytes"])
	}
	if cpu, _ := fields["cpuSeconds"].(float64); cpu < 0.02 {
		t.Errorf("after 400 ms of spinning, cpuSeconds = %v", fields["cpuSeconds"])
	}
	if lim, _ := fields["memoryLimitBytes"].(float64); lim != 64<<20 {
		t.Errorf("memoryLimitBytes = %v, want the manifest's 64 MiB", fields["memoryLimitBytes"])
	}
	if table := p.erg(false, "grain", "ls"); !strings.Contains(table, "CPU") || !strings.Contains(table, "/64 MiB") {
		t.Errorf("grain ls:\n%s", table)
	}

	var set erg.Grain
	json.Unmarshal([]byte(p.erg(false, "grain", "limits", g.ID, "--cpu-percent", "50", "--json")), &set)
	if set.Usage == nil || set.Usage.CPUPercent != 50 || set.Usage.CPUPercentSet != 50 {
		t.Errorf("after --cpu-percent 50: %+v", set.Usage)
	}
	if out := p.erg(true, "grain", "limits", g.ID, "--cpu-percent", "-5"); !strings.Contains(out, "CPU ceiling") {
		t.Errorf("--cpu-percent -5: %s", out)
	}
	if out := p.erg(false, "grain", "limits", g.ID); !strings.Contains(out, "50% of one core (set for this grain)") {
		t.Errorf("grain limits after a refused change:\n%s", out)
	}
	set = erg.Grain{}
	json.Unmarshal([]byte(p.erg(false, "grain", "limits", g.ID, "--cpu-percent", "0", "--json")), &set)
	if set.Usage == nil || set.Usage.CPUPercent != 0 || set.Usage.CPUPercentSet != 0 {
		t.Errorf("after --cpu-percent 0 (the default, none here): %+v", set.Usage)
	}

	// Bob: his own grain's usage, nothing of alice's.
	var inv erg.Invite
	json.Unmarshal([]byte(p.erg(false, "user", "invite", "bob", "--json")), &inv)
	bob, base := ergWeb(t, p)
	if code, body := bob.post(strings.TrimPrefix(inv.URL, base), url.Values{"password": {"bob password"}, "password2": {"bob password"}}); code != http.StatusSeeOther {
		t.Fatalf("join: %d %s", code, body)
	}
	bob.get("/grains")
	bg, _ := bobsGrain(t, bob, "bob's")
	var sh erg.Share
	json.Unmarshal([]byte(p.erg(false, "share", "new", g.ID, "--role", "owner", "--json")), &sh)
	if code, body := bob.get(strings.TrimPrefix(sh.URL, base)); code != http.StatusSeeOther {
		t.Fatalf("bob opens the share: %d %s", code, body)
	}
	_, body := bob.api("GET", "/api/grains", nil)
	var bobs []erg.Grain
	json.Unmarshal([]byte(body), &bobs)
	seen := map[string]bool{}
	for _, x := range bobs {
		seen[x.ID] = true
		if x.ID == bg.ID && x.Usage == nil {
			t.Errorf("bob's own grain without usage: %+v", x)
		}
		if x.ID == g.ID && x.Usage != nil {
			t.Errorf("bob sees the usage of alice's grain shared with him: %+v", x.Usage)
		}
	}
	if !seen[g.ID] || !seen[bg.ID] {
		t.Errorf("bob's list: %s", body)
	}
	if _, body := bob.api("GET", "/api/grains/"+g.ID, nil); strings.Contains(body, "usage") {
		t.Errorf("bob's GET of alice's grain has usage: %s", body)
	}
	pct := 10
	if code, body := bob.api("PATCH", "/api/grains/"+bg.ID+"/limits", erg.GrainLimitsRequest{CPUPercent: &pct}); code != http.StatusForbidden {
		t.Errorf("bob sets his own grain's CPU ceiling: %d %s", code, body)
	}
}
