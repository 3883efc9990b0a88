package node

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"erg"
	"erg/fed"
)

// smuggledHeaders are client headers some app server (CGI, WSGI, Rack)
// would read as an identity header, by folding "_" and "." into "-", or
// that are one under another case; and two lines of the real one.
var smuggledHeaders = [][2]string{
	{"X-Erg_Permissions", "write"},
	{"x_erg_permissions", "write"},
	{"X.Erg.Username", "mallory"},
	{"X-Sandstorm_Username", "mallory"},
	{"X_sandstorm_username", "mallory"},
	{"x-erg-permissions", "admin"},
	{"X-ERG-USERNAME", "mallory"},
	{"X-Erg-Permissions", "write"},
	{"X-Erg-Permissions", "admin"},
	{"X-Sandstorm-Session-Id", "forged"},
	{"Some_Other_Header", "x"},
}

// withSmuggled is a GET of url carrying every smuggled header under its
// exact spelling: Go's client writes a raw key as it is.
func withSmuggled(url string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, h := range smuggledHeaders {
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	req.Header.Set("Accept", "text/x-test")
	return req
}

// checkGrainHeaders fails unless hdr, the headers the echo app received,
// hold exactly one of each identity header the node sets, with the node's
// values, and nothing else that resembles one.
func checkGrainHeaders(t *testing.T, hdr http.Header, username string) {
	t.Helper()
	for k, vs := range hdr {
		if fed.IsClientHeaderDropped(k) {
			if !strings.HasPrefix(k, "X-Erg-") && !strings.HasPrefix(k, "X-Sandstorm-") {
				t.Errorf("the app got %s: %q", k, vs)
				continue
			}
			switch strings.TrimPrefix(strings.TrimPrefix(k, "X-Erg-"), "X-Sandstorm-") {
			case "User-Id", "Username", "Permissions", "Session-Id":
			default:
				t.Errorf("the app got %s: %q", k, vs)
			}
		}
		for _, v := range vs {
			if v == "mallory" || v == "admin" || v == "forged" || v == "write" || v == "x" {
				t.Errorf("a client's value reached the app: %s: %q", k, vs)
			}
		}
	}
	for _, p := range []string{"X-Erg-", "X-Sandstorm-"} {
		if vs := hdr.Values(p + "Username"); !slices.Equal(vs, []string{username}) {
			t.Errorf("%sUsername = %q, want %q", p, vs, username)
		}
		if vs := hdr.Values(p + "Permissions"); !slices.Equal(vs, []string{"read,write"}) {
			t.Errorf("%sPermissions = %q", p, vs)
		}
		for _, name := range []string{"User-Id", "Session-Id"} {
			if vs := hdr.Values(p + name); len(vs) != 1 || len(vs[0]) != 32 {
				t.Errorf("%s%s = %q", p, name, vs)
			}
		}
	}
	if hdr.Get("Accept") != "text/x-test" {
		t.Errorf("an ordinary header was lost: %v", hdr)
	}
}

// echoedHeaders sends req with c and returns the headers echo received.
func echoedHeaders(t *testing.T, c *http.Client, req *http.Request) http.Header {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hdr http.Header
	if err := json.NewDecoder(resp.Body).Decode(&hdr); err != nil {
		t.Fatalf("%s: %v", resp.Status, err)
	}
	return hdr
}

func TestProxyDropsSmuggledIdentityHeaders(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	hdr := echoedHeaders(t, n.http, withSmuggled(origin+"/headers"))
	checkGrainHeaders(t, hdr, "alice")
}

func TestRelayDropsSmuggledIdentityHeaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	e, err := a.grains.NewGrain(ctx, a.owner(), "echo", "Echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), e.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}

	t.Run("from the friend's browser, through both nodes", func(t *testing.T) {
		origin := openOn(t, b, b.owner(), sharedWith(t, b, b.owner(), "Echo").ID)
		hdr := echoedHeaders(t, b.http, withSmuggled(origin+"/headers"))
		checkGrainHeaders(t, hdr, "bob@bnode")
	})

	t.Run("from a friend's node that sends them itself", func(t *testing.T) {
		// fed.Transport cleans headers on the friend's side too; a node
		// that misbehaves would not, so the names go straight into the call.
		g, _, err := fed.Restore(ctx, gatewayTo(t, b, a), heldToken(t, b, "Echo"), "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		headers := append(slices.Clone(smuggledHeaders), [2]string{"Accept", "text/x-test"})
		fut, release := g.Request(ctx, func(p fed.Grain_request_Params) error {
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
			return p.SetResponse(fed.Responder_ServerToClient(unusedResponder{}))
		})
		defer release()
		res, err := fut.Struct()
		if err != nil {
			t.Fatal(err)
		}
		if !res.HasAnswer() {
			t.Fatal("no whole answer")
		}
		ans, _ := res.Answer()
		body, _ := ans.Body()
		var hdr http.Header
		if err := json.Unmarshal(body, &hdr); err != nil {
			t.Fatalf("%d %v: %s", ans.Status(), err, body)
		}
		checkGrainHeaders(t, hdr, "bob@bnode")
	})
}

// unusedResponder is for exchanges answered whole, in the call's results.
type unusedResponder struct{}

func (unusedResponder) Start(context.Context, fed.Responder_start) error {
	return nil
}
