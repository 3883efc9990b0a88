package forward

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Heads against net/http: whatever head Heads takes, ReadRequest or
// ReadResponse reads the same way (method, target, URL, header, host,
// framing, where the head ends), and whatever it leaves it leaves unread.

// Heads Heads takes: the plainest, and some the grain loop gives back to
// net/http after reading them (an upgrade, an Expect, no Host).
var plainRequests = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /bytes?n=100 HTTP/1.1\r\nHost: g-x.localhost:6080\r\nCookie: erg_grain=abc; theirs=1\r\nAccept: */*\r\n\r\nGET / HTTP/1.1\r\n",
	"HEAD /x;y=1/@:a+b$c,d&e=f HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\nsec-ch-ua: \"x\"\r\nX-A: 1\r\nx-a:  2 \t\r\n\r\n",
	"GET /? HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?q=%20%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
}

// Heads that net/http reads one way and a lax reader another, or changes
// as it reads them, or that are not of the plainest kind: Heads leaves
// them all to net/http.
var otherRequests = []string{
	"GET /a?b?c#d HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /%61 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //evil/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x{y} HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\nabcd",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd",
	"GET / HTTP/1.1\r\nHost: a\r\nX: y\nContent-Length: 30\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: y\rZ\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-\x7f: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n",
}

// fill returns a reader over s with s in its buffer, as far as it goes.
func fill(s string) *bufio.Reader {
	br := bufio.NewReaderSize(strings.NewReader(s), 4096)
	br.Peek(1)
	return br
}

func rest(t *testing.T, br *bufio.Reader) string {
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkRequest(t *testing.T, in string) bool {
	var hs Heads
	br := fill(in)
	got, ok := hs.Request(br)
	if !ok {
		if br.Buffered() != min(len(in), 4096) {
			t.Fatalf("%q: not taken, but %d bytes read", in, min(len(in), 4096)-br.Buffered())
		}
		return false
	}
	want, err := http.ReadRequest(fill(in))
	if err != nil {
		t.Fatalf("%q: taken, net/http refuses it: %v", in, err)
	}
	wbr := fill(in)
	http.ReadRequest(wbr)
	if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.Host != want.Host || got.Close != want.Close {
		t.Errorf("%q:\n got %q %q %q %d.%d host %q close %v\nwant %q %q %q %d.%d host %q close %v", in,
			got.Method, got.RequestURI, got.Proto, got.ProtoMajor, got.ProtoMinor, got.Host, got.Close,
			want.Method, want.RequestURI, want.Proto, want.ProtoMajor, want.ProtoMinor, want.Host, want.Close)
	}
	if *got.URL != *want.URL {
		t.Errorf("%q: URL %#v, net/http's %#v", in, *got.URL, *want.URL)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("%q: header %q, net/http's %q", in, got.Header, want.Header)
	}
	if got.Body != http.NoBody || want.Body != http.NoBody || want.ContentLength != 0 || got.ContentLength != 0 {
		t.Errorf("%q: a body (net/http's %v, length %d)", in, want.Body, want.ContentLength)
	}
	if g, w := rest(t, br), rest(t, wbr); g != w {
		t.Errorf("%q: left %q, net/http %q", in, g, w)
	}
	return true
}

func TestHeadsReadRequestsAsNetHTTP(t *testing.T) {
	for _, in := range plainRequests {
		if !checkRequest(t, in) {
			t.Errorf("not taken: %q", in)
		}
	}
	for _, in := range otherRequests {
		if checkRequest(t, in) {
			t.Errorf("taken: %q", in)
		}
	}
}

func FuzzHeadsRequest(f *testing.F) {
	for _, s := range append(plainRequests, otherRequests...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) { checkRequest(t, in) })
}

// Answers Heads takes (the last cut short), and the others.
var plainResponses = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloHTTP/1.1",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 007\r\n\r\n1234567",
	"HTTP/1.1 599 whatever it says\r\nContent-Length: 3\r\n\r\nab",
}

var otherResponses = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nto the end",
	"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\r\n b\r\n\r\na",
	"HTTP/1.1 200 OK\nContent-Length: 1\n\na",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\na",
}

func checkResponse(t *testing.T, in string) bool {
	var hs Heads
	br := fill(in)
	got, ok := hs.response(br, "GET", true)
	if !ok {
		if br.Buffered() != min(len(in), 4096) {
			t.Fatalf("%q: not taken, but %d bytes read", in, min(len(in), 4096)-br.Buffered())
		}
		return false
	}
	wbr := fill(in)
	want, err := http.ReadResponse(wbr, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("%q: taken, net/http refuses it: %v", in, err)
	}
	if got.StatusCode != want.StatusCode || got.Status != want.Status || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.ContentLength != want.ContentLength || got.Close != want.Close || len(want.TransferEncoding) > 0 || want.Trailer != nil {
		t.Errorf("%q:\n got %d %q %q length %d close %v\nwant %d %q %q length %d close %v %q", in,
			got.StatusCode, got.Status, got.Proto, got.ContentLength, got.Close,
			want.StatusCode, want.Status, want.Proto, want.ContentLength, want.Close, want.TransferEncoding)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("%q: header %q, net/http's %q", in, got.Header, want.Header)
	}
	if (got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Errorf("%q: body %v, net/http's %v", in, got.Body, want.Body)
	}
	gb, gerr := io.ReadAll(got.Body)
	wb, werr := io.ReadAll(want.Body)
	if string(gb) != string(wb) || (gerr == nil) != (werr == nil) {
		t.Errorf("%q: body %q (%v), net/http's %q (%v)", in, gb, gerr, wb, werr)
	}
	if gerr == nil {
		if g, w := rest(t, br), rest(t, wbr); g != w {
			t.Errorf("%q: left %q, net/http %q", in, g, w)
		}
	}
	return true
}

func TestHeadsReadResponsesAsNetHTTP(t *testing.T) {
	for _, in := range plainResponses {
		if !checkResponse(t, in) {
			t.Errorf("not taken: %q", in)
		}
	}
	for _, in := range otherResponses {
		if checkResponse(t, in) {
			t.Errorf("taken: %q", in)
		}
	}
}

func FuzzHeadsResponse(f *testing.F) {
	for _, s := range append(plainResponses, otherResponses...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) { checkResponse(t, in) })
}

// A browser's request head read by Heads and by http.ReadRequest, each
// from a reader filled anew per read.
func BenchmarkRequestHead(b *testing.B) {
	head := "GET /static/app.js?v=3 HTTP/1.1\r\nHost: g-abc.localhost:6080\r\nConnection: keep-alive\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
		"Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\n" +
		"Referer: http://g-abc.localhost:6080/\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Cookie: erg_grain=0123456789abcdef0123456789abcdef0123456789a\r\n\r\n"
	sr := strings.NewReader(head)
	br := bufio.NewReaderSize(sr, 4096)
	refill := func() {
		sr.Reset(head)
		br.Reset(sr)
		br.Peek(1)
	}
	b.Run("Heads", func(b *testing.B) {
		var hs Heads
		b.ReportAllocs()
		for b.Loop() {
			refill()
			if _, ok := hs.Request(br); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("ReadRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refill()
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A Heads read again puts a request's values where the last request's
// went, and an answer's only when asked: values handed out for an answer
// not read to be reused (Forward's, which a ResponseWriter may keep) are
// never written over.
func TestHeadsReuseValuesOnlyWhereAsked(t *testing.T) {
	var hs Heads
	r1, ok := hs.Request(fill("GET /a HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nX-Two: 2\r\n\r\n"))
	if !ok || r1.Header.Get("X-One") != "1" {
		t.Fatalf("first request: %v %v", ok, r1)
	}
	r2, ok := hs.Request(fill("GET /b HTTP/1.1\r\nHost: h\r\nX-Three: 3\r\nX-One: one\r\n\r\n"))
	if !ok || r2.Header.Get("X-Three") != "3" || r2.Header.Get("X-One") != "one" || len(r2.Header) != 2 {
		t.Fatalf("second request's header %v", r2.Header)
	}
	kept, ok := hs.response(fill("HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 0\r\n\r\n"), "GET", false)
	if !ok {
		t.Fatal("answer not read")
	}
	a := kept.Header["X-A"]
	for i, reuse := range []bool{true, true, false, true} {
		resp, ok := hs.response(fill(fmt.Sprintf("HTTP/1.1 200 OK\r\nX-B: %d\r\nContent-Length: 0\r\n\r\n", i)), "GET", reuse)
		if !ok || resp.Header.Get("X-B") != strconv.Itoa(i) {
			t.Fatalf("answer %d: %v", i, resp.Header)
		}
	}
	if a[0] != "a" {
		t.Errorf("an answer's value kept from before was written over: %q", a)
	}
}
