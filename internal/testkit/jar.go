package testkit

import (
	"net/http"
	"net/url"
	"strings"
)

// LocalhostJar keeps the cookies of http://localhost and its subdomains as
// a browser does, which treats them as secure contexts: Secure cookies
// (the grain session) are sent back.
type LocalhostJar struct{ http.CookieJar }

func (j LocalhostJar) secure(u *url.URL) *url.URL {
	if u.Scheme == "http" && (u.Hostname() == "localhost" || strings.HasSuffix(u.Hostname(), ".localhost")) {
		v := *u
		v.Scheme = "https"
		return &v
	}
	return u
}

// SetCookies implements http.CookieJar.
func (j LocalhostJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.CookieJar.SetCookies(j.secure(u), cookies)
}

// Cookies implements http.CookieJar.
func (j LocalhostJar) Cookies(u *url.URL) []*http.Cookie { return j.CookieJar.Cookies(j.secure(u)) }
