package webui

import (
	"net/http"
	"strings"
	"testing"
)

// cookieValue finds the session cookie as r.Cookie would, in every way a
// Cookie header can be written or mangled, and allocates nothing.
func TestCookieValueReadsAsNetHTTP(t *testing.T) {
	lines := [][]string{
		nil,
		{""},
		{grainCookie + "=s"},
		{"a=1; " + grainCookie + "=s; b=2"},
		{"a=1", grainCookie + "=s"},
		{grainCookie + "=\"quoted\""},
		{grainCookie + "=\""},
		{grainCookie + "=\"\""},
		{grainCookie + "=bad\\value; " + grainCookie + "=good"},
		{grainCookie + "=first; " + grainCookie + "=second"},
		{"  " + grainCookie + " = spaced ;"},
		{"\t" + grainCookie + "=tab\t"},
		{grainCookie},
		{grainCookie + "="},
		{grainCookie + "=a b,c"},
		{grainCookie + "=caf\u00e9"},
		{grainCookie + "=x\x7f"},
		{"Erg_grain=s"},
		{grainCookie + "x=s"},
		{";;;" + grainCookie + "=s;;"},
		{"x" + grainCookie + "=s"},
		{grainCookie + "=a=b"},
		{strings.Repeat("c=1;", 3000) + grainCookie + "=toomany"},
		{strings.Repeat("c=1;", 2998) + grainCookie + "=justenough"},
	}
	for _, l := range lines {
		r := &http.Request{Header: http.Header{}}
		if l != nil {
			r.Header["Cookie"] = l
		}
		got, ok := cookieValue(r, grainCookie)
		c, err := r.Cookie(grainCookie)
		if ok != (err == nil) || ok && got != c.Value {
			short := strings.Join(l, " | ")
			if len(short) > 80 {
				short = short[len(short)-80:]
			}
			t.Errorf("%q: cookieValue %q %v, r.Cookie %v %v", short, got, ok, c, err)
		}
	}
	r := &http.Request{Header: http.Header{"Cookie": {"theirs=1; " + grainCookie + "=" + strings.Repeat("s", 43)}}}
	if a := testing.AllocsPerRun(100, func() { cookieValue(r, grainCookie) }); a != 0 {
		t.Errorf("%.0f allocations to find the session cookie", a)
	}
}
