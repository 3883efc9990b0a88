package fed

import (
	"context"
	"encoding/json"
	"net/http"
	"net/textproto"
	"slices"
	"testing"
)

// smuggled are spellings of identity headers that some server would read
// as X-Erg-* or X-Sandstorm-*, and other names with "_".
var smuggled = []string{
	"X-Erg_Permissions", "x_erg_permissions", "X.Erg.Username", "X-Sandstorm_Username",
	"X_sandstorm_username", "x-erg-permissions", "X-ERG-USERNAME", "x-sandstorm.session-id",
	"X-Erg-Anything", "Some_Header", "_", "Accept_Language",
}

func TestIsClientHeaderDropped(t *testing.T) {
	for _, name := range smuggled {
		if !IsClientHeaderDropped(name) {
			t.Errorf("%q passes", name)
		}
	}
	for _, name := range []string{"Accept", "X-Erg", "X-Ergo-Permissions", "X-Sandstormy", "Content-Type", "X.Y", "Cookie", "X-Forwarded-Host"} {
		if IsClientHeaderDropped(name) {
			t.Errorf("%q is dropped", name)
		}
	}
	for name, want := range map[string]bool{"X.Erg.Username": true, "Some_Header": false, "X_Sandstorm_X": true, "Accept": false} {
		if IsIdentityHeader(name) != want {
			t.Errorf("IsIdentityHeader(%q) = %v", name, !want)
		}
	}
}

// TestHeaderKeysKeepUnderscores pins what the drop relies on: net/http
// keeps "_" and "." in a key and canonicalizes the rest, so a smuggled
// name is a key of its own next to the real one, not merged into it.
func TestHeaderKeysKeepUnderscores(t *testing.T) {
	for name, want := range map[string]string{
		"x_erg_permissions": "X_erg_permissions",
		"X-Erg_Permissions": "X-Erg_permissions",
		"X.Erg.Username":    "X.erg.username",
	} {
		if got := textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("CanonicalMIMEHeaderKey(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCleanHeadersStripsSmuggledIdentity(t *testing.T) {
	h := http.Header{}
	for _, name := range smuggled {
		h.Add(name, "forged")
		h[name] = append(h[name], "forged") // a raw key, as a map literal could hold
	}
	h.Add("X-Erg-Permissions", "write")
	h.Add("X-Erg-Permissions", "admin") // two lines
	h.Set("Accept", "text/html")
	h.Set("X-Forwarded-Host", "g-x.bnode")
	cleanHeaders(h)
	StripClientHeaders(h)
	var keys []string
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"Accept", "X-Forwarded-Host"}) {
		t.Errorf("left %v", h)
	}
}

// TestRelayDropsSmuggledHeadersFromAMisbehavingNode sends raw header names
// straight over capnp, past the friend-side Transport's own cleaning: the
// owner's side drops them and the grain sees only what prepare set.
func TestRelayDropsSmuggledHeadersFromAMisbehavingNode(t *testing.T) {
	r := newRelay(t)
	var headers [][2]string
	for _, name := range smuggled {
		headers = append(headers, [2]string{name, "write"})
	}
	headers = append(headers, [2]string{"X-Erg-Permissions", "admin"}, [2]string{"X-Erg-Permissions", "write"}, [2]string{"Accept", "x/y"})
	fut, release := r.grain.Request(context.Background(), func(p Grain_request_Params) error {
		head, err := p.NewHead()
		if err != nil {
			return err
		}
		head.SetMethod("GET")
		head.SetPath("/headers")
		list, err := head.NewHeaders(int32(len(headers)))
		if err != nil {
			return err
		}
		for i, h := range headers {
			list.At(i).SetName(h[0])
			list.At(i).SetValue(h[1])
		}
		return p.SetResponse(Responder_ServerToClient(&responder{started: make(chan startResult, 1)}))
	})
	defer release()
	res, err := fut.Struct()
	if err != nil {
		t.Fatal(err)
	}
	ans, err := readAnswer(res)
	if err != nil {
		t.Fatal(err)
	}
	var got http.Header
	if err := json.Unmarshal(ans.whole, &got); err != nil {
		t.Fatalf("%v: %s", err, ans.whole)
	}
	for k, vs := range got {
		switch k {
		case "X-Erg-Username":
			if !slices.Equal(vs, []string{"bob@friend"}) {
				t.Errorf("%s = %q", k, vs)
			}
		case "X-Erg-Permissions":
			if !slices.Equal(vs, []string{"read,write"}) {
				t.Errorf("%s = %q", k, vs)
			}
		case "Accept", "Accept-Encoding", "User-Agent":
		default:
			t.Errorf("the grain got %s: %q", k, vs)
		}
	}
}

// IsIdentityHeader reads an ASCII name in place as its rule reads the
// name lowered and folded, and allocates nothing for it.
func TestIsIdentityHeaderAsItsRule(t *testing.T) {
	names := append([]string{"", "X", "x-erg", "X-Erg-", "X-Sandstorm-", "X-SANDSTORM_", "x.erg.", "X-Erg\u212a",
		"\u212a-erg-x", "X-Erg-\u0130", "X-\u0130rg-", "XX-Erg-", "X-Ergo-", "x-sandstorm", "x-sandstorm.-"}, smuggled...)
	// Every name of up to 5 bytes from the rule's letters and their kin.
	alphabet := []byte("xXeErRgG-_.s")
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		names = append(names, string(prefix))
		if len(prefix) == 5 {
			return
		}
		for _, c := range alphabet {
			gen(append(prefix, c))
		}
	}
	gen(nil)
	for _, name := range names {
		if got, want := IsIdentityHeader(name), isIdentityFolded(name); got != want {
			t.Errorf("IsIdentityHeader(%q) = %v, its rule says %v", name, got, want)
		}
	}
	var got bool
	if a := testing.AllocsPerRun(100, func() { got = IsIdentityHeader("X-Forwarded-Host") || IsIdentityHeader("X-Erg-Username") }); a != 0 || !got {
		t.Errorf("%.0f allocations to read two names; X-Erg-Username read as an identity header: %v", a, got)
	}
}
