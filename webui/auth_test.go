package webui

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"erg"
)

func TestLimiter(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for range limitPerAccount {
		if ok, _ := l.allow("1.2.3.4", "alice"); !ok {
			t.Fatal("refused before the limit")
		}
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
		l.allow("9.9.9.9", string(rune('a'+i%26))+"x")
	}
	if ok, _ := l.allow("9.9.9.9", "fresh"); ok {
		t.Error("an address that failed on many names is not limited")
	}
	now = now.Add(limitWindow)
	if ok, _ := l.allow("1.2.3.4", "alice"); !ok {
		t.Error("still locked after the window")
	}
	l.allow("2.2.2.2", "carol")
	l.allow("2.2.2.2", "carol")
	l.succeeded("2.2.2.2", "carol")
	if e := l.entries["2.2.2.2\x00carol"]; e != nil {
		t.Error("a success does not clear the account's failures")
	}
	if e := l.entries["2.2.2.2"]; e == nil || e.fails != 1 {
		t.Errorf("the address after a failure and a success: %+v, want 1 failure", e)
	}
}

// TestLimiterReservesConcurrentAttempts: many attempts at once get no more
// than the limit between them, since allow counts each as it lets it by.
func TestLimiterReservesConcurrentAttempts(t *testing.T) {
	l := newLimiter()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if ok, _ := l.allow("1.2.3.4", "alice"); ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != limitPerAccount {
		t.Errorf("%d of 200 concurrent attempts allowed, want %d", n, limitPerAccount)
	}
}

func TestLocalPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/grains/abc", "/grains/abc"},
		{"/s/tok?x=1", "/s/tok?x=1"},
		{"/ok/path?x=1", "/ok/path?x=1"},
		{"/grains/abc#top", "/grains/abc#top"},
		{"/", "/"},
		{"//evil.example/", "/grains"},
		{"///evil.example/", "/grains"},
		{"/\\evil.example", "/grains"},
		{"\\\\evil.example", "/grains"},
		{"/ok\\path", "/grains"},
		{"/\t/evil.example/x", "/grains"},
		{"/\n/evil.example", "/grains"},
		{"/\r/evil.example", "/grains"},
		{"/\x00/evil", "/grains"},
		{"/\x7f/evil", "/grains"},
		{"/%09/evil.example/x", "/grains"},
		{"/%0a/", "/grains"},
		{"/%0d%0a/evil", "/grains"},
		{"/%2F/evil.example", "/grains"},
		{"/%5Cevil.example", "/grains"},
		{"https://evil.com", "/grains"},
		{"http:/evil.com", "/grains"},
		{"javascript:alert(1)", "/grains"},
		{"JavaScript:alert(1)", "/grains"},
		{"evil.example", "/grains"},
		{" /grains", "/grains"},
		{"/%zz", "/grains"},
		{"", "/grains"},
	} {
		if got := localPath(c.in); got != c.want {
			t.Errorf("localPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestShellHost(t *testing.T) {
	h := NewHandler(Services{}, Options{Domain: "localhost"}, nil)
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
	g := erg.Grain{ID: "abcdefghijklmnop", Title: `Shopping list: "week" ../../x`}
	if got := backupName(g); got != "Shopping-list-week-x-abcdefgh.zip" {
		t.Errorf("backupName = %q", got)
	}
	if got := backupName(erg.Grain{ID: "abc", Title: "«»"}); got != "grain-abc.zip" {
		t.Errorf("backupName of an unprintable title = %q", got)
	}
}
