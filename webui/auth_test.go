package webui

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for range limitPerAccount {
		if ok, _ := l.allow("1.2.3.4", "alice"); !ok {
			t.Fatal("refused before the limit")
		}
		l.failed("1.2.3.4", "alice")
	}
	if ok, wait := l.allow("1.2.3.4", "ALICE "); ok || wait <= 0 || wait > limitWindow {
		t.Errorf("after %d failures: ok=%v wait=%v", limitPerAccount, ok, wait)
	}
	if ok, _ := l.allow("5.6.7.8", "alice"); !ok {
		t.Error("another address is locked out with the first")
	}
	if ok, _ := l.allow("1.2.3.4", "bob"); !ok {
		t.Error("another account from the address is locked")
	}
	// Spraying names from one address hits the address limit.
	for i := range limitPerAddress {
		l.failed("9.9.9.9", string(rune('a'+i%26))+"x")
	}
	if ok, _ := l.allow("9.9.9.9", "fresh"); ok {
		t.Error("an address that failed on many names is not limited")
	}
	now = now.Add(limitWindow)
	if ok, _ := l.allow("1.2.3.4", "alice"); !ok {
		t.Error("still locked after the window")
	}
	l.failed("2.2.2.2", "carol")
	l.succeeded("2.2.2.2", "carol")
	if e := l.entries["2.2.2.2\x00carol"]; e != nil {
		t.Error("a success does not clear the account's failures")
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/grains/abc":      "/grains/abc",
		"/s/tok?x=1":       "/s/tok?x=1",
		"//evil.example/":  "/grains",
		"/\\evil.example":  "/grains",
		"https://evil.com": "/grains",
		"":                 "/grains",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellHost(t *testing.T) {
	h := NewHandler(nil, Options{Domain: "localhost"}, nil)
	for host, want := range map[string]hostKind{
		"localhost:6080":     hostShell,
		"LOCALHOST":          hostShell,
		"127.0.0.1:6080":     hostIP,
		"[::1]:6080":         hostIP,
		"evil.example:6080":  hostOther,
		"localhost.evil":     hostOther,
		"g-abc.localhost":    hostOther,
		"rebind.attacker.io": hostOther,
	} {
		if got := h.shellHost(host); got != want {
			t.Errorf("shellHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestBackupName(t *testing.T) {
	g := Grain{ID: "abcdefghijklmnop", Title: `Shopping list: "week" ../../x`}
	if got := backupName(g); got != "Shopping-list-week-x-abcdefgh.zip" {
		t.Errorf("backupName = %q", got)
	}
	if got := backupName(Grain{ID: "abc", Title: "«»"}); got != "grain-abc.zip" {
		t.Errorf("backupName of an unprintable title = %q", got)
	}
}
