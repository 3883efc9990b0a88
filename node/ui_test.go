package node

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"erg/webui"
)

// owner is the node's owner account, whom the control socket acts for.
func (n *testNode) owner() webui.User {
	n.t.Helper()
	u, err := n.Owner(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return u
}

// localhostJar treats http://*.localhost as the secure context browsers
// take it for, so Secure cookies (the grain session) are sent back.
type localhostJar struct{ http.CookieJar }

func (j localhostJar) secure(u *url.URL) *url.URL {
	if u.Scheme == "http" && (u.Hostname() == "localhost" || strings.HasSuffix(u.Hostname(), ".localhost")) {
		v := *u
		v.Scheme = "https"
		return &v
	}
	return u
}

func (j localhostJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.CookieJar.SetCookies(j.secure(u), cookies)
}

func (j localhostJar) Cookies(u *url.URL) []*http.Cookie { return j.CookieJar.Cookies(j.secure(u)) }
