package webui

import (
	"net/http"
	"reflect"
	"testing"

	"erg"
)

func TestGrainHost(t *testing.T) {
	h := NewHandler(Services{}, Options{Domain: "localhost"}, nil)
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
	setGrainHeaders(hdr, erg.Viewer{UserID: "u", Username: "alice", Permissions: []string{"read", "write"}, SessionID: "s"})
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

func TestSetGrainHeadersDropsSmuggledSpellings(t *testing.T) {
	hdr := http.Header{}
	for _, name := range []string{"X-Erg_Permissions", "x_erg_permissions", "X.Erg.Username", "X-Sandstorm_Username", "X_sandstorm_username", "Other_Header"} {
		hdr.Add(name, "write")
	}
	hdr["X-Erg-Permissions"] = []string{"write", "admin"}
	hdr.Set("Accept", "text/html")
	setGrainHeaders(hdr, erg.Viewer{UserID: "u", Username: "alice", Permissions: []string{"read"}, SessionID: "s"})
	want := http.Header{"Accept": {"text/html"}}
	for _, p := range []string{"X-Erg-", "X-Sandstorm-"} {
		want[p+"User-Id"] = []string{"u"}
		want[p+"Username"] = []string{"alice"}
		want[p+"Permissions"] = []string{"read"}
		want[p+"Session-Id"] = []string{"s"}
	}
	if !reflect.DeepEqual(hdr, want) {
		t.Errorf("got %v\nwant %v", hdr, want)
	}
}

func TestCrossOrigin(t *testing.T) {
	const own = "http://g-abc.localhost:6080"
	tests := []struct {
		method string
		h      map[string]string
		cross  bool
	}{
		{"POST", nil, false}, // curl, an old browser
		{"POST", map[string]string{"Origin": own}, false},
		{"POST", map[string]string{"Origin": "HTTP://G-ABC.localhost:6080"}, false},
		{"POST", map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}, false},
		{"PUT", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"POST", map[string]string{"Origin": "http://g-def.localhost:6080"}, true},
		{"POST", map[string]string{"Origin": "http://localhost:6080"}, true},
		{"POST", map[string]string{"Origin": "https://g-abc.localhost:6080"}, true},
		{"POST", map[string]string{"Origin": "http://g-abc.localhost:6081"}, true},
		{"POST", map[string]string{"Origin": "null"}, true},
		{"DELETE", map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"PATCH", map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"POST", map[string]string{"Origin": own, "Sec-Fetch-Site": "same-site"}, true},
		{"GET", map[string]string{"Origin": "http://g-def.localhost:6080", "Sec-Fetch-Site": "same-site"}, false},
		{"HEAD", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"OPTIONS", map[string]string{"Origin": "http://evil.example"}, false},
		{"GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Origin": own}, false},
		{"GET", map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "websocket", "Origin": "http://g-def.localhost:6080"}, true},
		{"GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-Fetch-Site": "same-site"}, true},
		{"GET", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(tt.method, own+"/x", nil)
		for k, v := range tt.h {
			r.Header.Set(k, v)
		}
		if got := crossOrigin(r); got != tt.cross {
			t.Errorf("%s %v: crossOrigin = %v, want %v", tt.method, tt.h, got, tt.cross)
		}
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
