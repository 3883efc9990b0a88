package webui

import (
	"net/http"
	"testing"
)

func TestGrainHost(t *testing.T) {
	h := NewHandler(nil, Options{Domain: "localhost"}, nil)
	tests := []struct {
		host string
		id   string
		ok   bool
	}{
		{"g-abc123.localhost:6080", "abc123", true},
		{"G-ABC123.LOCALHOST", "abc123", true},
		{"localhost:6080", "", false},
		{"g-abc.evil.localhost", "", false},
		{"g-abc.localhost.evil", "", false},
		{"g-.localhost", "", false},
		{"g-a_b.localhost", "", false},
		{"x-abc.localhost", "", false},
		{"127.0.0.1:6080", "", false},
	}
	for _, tt := range tests {
		id, ok := h.grainHost(tt.host)
		if id != tt.id || ok != tt.ok {
			t.Errorf("grainHost(%q) = %q, %v; want %q, %v", tt.host, id, ok, tt.id, tt.ok)
		}
	}
}

func TestSetGrainHeadersReplacesClientIdentity(t *testing.T) {
	hdr := http.Header{}
	hdr.Set("X-Erg-Username", "mallory")
	hdr.Set("X-Erg-Extra", "x")
	hdr.Set("x-sandstorm-permissions", "admin")
	hdr.Set("Accept", "text/html")
	setGrainHeaders(hdr, Viewer{UserID: "u", Username: "alice", Permissions: []string{"read", "write"}, SessionID: "s"})
	want := map[string]string{
		"X-Erg-Username": "alice", "X-Sandstorm-Username": "alice",
		"X-Erg-Permissions": "read,write", "X-Sandstorm-Permissions": "read,write",
		"X-Erg-User-Id": "u", "X-Erg-Session-Id": "s", "Accept": "text/html",
	}
	for k, v := range want {
		if got := hdr.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if hdr.Get("X-Erg-Extra") != "" {
		t.Error("a client-sent X-Erg-* header survived")
	}
}

func TestDropCookieKeepsOthers(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.Header.Set("Cookie", "a=1; erg_grain=secret; b=2")
	dropCookie(r, grainCookie)
	if got := r.Header.Get("Cookie"); got != "a=1; b=2" {
		t.Errorf("Cookie = %q", got)
	}
}
