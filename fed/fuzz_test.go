package fed

import (
	"net/http"
	"strings"
	"testing"

	"capnproto.org/go/capnp/v3"
)

func marshalHead(t testing.TB, method, path string, headers [][2]string, length int64) []byte {
	msg, seg, err := capnp.NewMessage(capnp.SingleSegment(nil))
	if err != nil {
		t.Fatal(err)
	}
	head, err := NewRootRequestHead(seg)
	if err != nil {
		t.Fatal(err)
	}
	head.SetMethod(method)
	head.SetPath(path)
	head.SetContentLength(length)
	list, _ := head.NewHeaders(int32(len(headers)))
	for i, h := range headers {
		list.At(i).SetName(h[0])
		list.At(i).SetValue(h[1])
	}
	b, err := msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzRequestHead feeds arbitrary messages to the owner's side of the relay
// as request heads. Whatever arrives, the relay must not panic, and a
// request it accepts must be one the grain can safely get: a path on the
// grain itself, no identity header but the ones the node sets, no header
// that could split a request.
func FuzzRequestHead(f *testing.F) {
	f.Add(marshalHead(f, "GET", "/", nil, 0))
	f.Add(marshalHead(f, "POST", "/upload?x=1", [][2]string{{"Content-Type", "text/plain"}}, 5))
	f.Add(marshalHead(f, "GET", "/ws", [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}}, 0))
	f.Add(marshalHead(f, "GET", "/", [][2]string{{"X-Erg-Username", "root"}, {"Connection", "X-Keep"}, {"X-Keep", "1"}}, -1))
	f.Add(marshalHead(f, "GET", "http://evil/", nil, 0))
	f.Add(marshalHead(f, "G\x00T", "/\r\n", [][2]string{{"A\nB", "c"}}, -5))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 255, 255, 255, 255})

	s := NewGrainServer(nil, func(r *http.Request) { r.Header.Set("X-Erg-Username", "bob@friend") })
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := capnp.Unmarshal(data)
		if err != nil {
			return
		}
		head, err := ReadRootRequestHead(msg)
		if err != nil {
			return
		}
		req, err := s.newRequest(head)
		if err != nil {
			return
		}
		if req.URL.Host != "grain" || !strings.HasPrefix(req.URL.Path, "/") || strings.HasPrefix(req.URL.Path, "//") {
			t.Fatalf("accepted a request for %s", req.URL)
		}
		if req.ContentLength < -1 {
			t.Fatalf("accepted content length %d", req.ContentLength)
		}
		for k, vs := range req.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-erg-") && (lk != "x-erg-username" || len(vs) != 1 || vs[0] != "bob@friend") {
				t.Fatalf("identity header %s: %q got through", k, vs)
			}
			if strings.HasPrefix(lk, "x-sandstorm-") || lk == "host" || lk == "transfer-encoding" {
				t.Fatalf("header %s got through", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") || strings.ContainsAny(k, "\r\n\x00 :") {
					t.Fatalf("header %q: %q could split the request", k, v)
				}
			}
		}
	})
}
