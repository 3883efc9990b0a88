package fed

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders belong to one connection and never cross the relay (RFC 9110
// section 7.6.1); Upgrade and Connection are rebuilt for upgrades.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
}

// cleanHeaders removes hop-by-hop headers (and those Connection names) and
// erg's identity headers under any spelling (IsIdentityHeader), keeping an
// upgrade's Upgrade header. Requests also go through StripClientHeaders.
func cleanHeaders(h http.Header) (upgrade string) {
	if isUpgrade(h) {
		upgrade = h.Get("Upgrade")
	}
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if IsIdentityHeader(k) {
			delete(h, k)
		}
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgrade)
	}
	return upgrade
}

// IsIdentityHeader reports whether name is, or would be read by some
// server as, one of the identity headers only the grain's node may set:
// with "_" and "." read as "-" (as CGI, WSGI and Rack servers fold them)
// and any case, it starts with X-Erg- or X-Sandstorm-.
func IsIdentityHeader(name string) bool {
	// The proxy asks of every header of every request: an ASCII name is
	// read in place, without the lowered copy the rule is written as.
	const longest = len("x-sandstorm-")
	for i := 0; i < len(name) && i < longest; i++ {
		if name[i] >= utf8.RuneSelf {
			return isIdentityFolded(name) // lowering may change the length
		}
	}
	return foldedPrefix(name, "x-erg-") || foldedPrefix(name, "x-sandstorm-")
}

// foldedPrefix reports whether the ASCII start of name, lowered and with
// "_" and "." read as "-", is p.
func foldedPrefix(name, p string) bool {
	if len(name) < len(p) {
		return false
	}
	for i := range len(p) {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_' || c == '.':
			c = '-'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// isIdentityFolded is IsIdentityHeader as its rule says it.
func isIdentityFolded(name string) bool {
	n := strings.Map(func(r rune) rune {
		switch r {
		case '_', '.':
			return '-'
		}
		return r
	}, strings.ToLower(name))
	return strings.HasPrefix(n, "x-erg-") || strings.HasPrefix(n, "x-sandstorm-")
}

// IsClientHeaderDropped reports whether a request header from a client
// (a browser, or a friend's node) must not reach a grain: an identity
// header under any spelling, or any name with "_", which servers that
// fold "_" into "-" could take for another header (nginx and Apache drop
// these by default too).
func IsClientHeaderDropped(name string) bool {
	return strings.Contains(name, "_") || IsIdentityHeader(name)
}

// StripClientHeaders deletes every header IsClientHeaderDropped names,
// all of its values, whatever the case of its key. A proxy into a grain
// calls it before it sets the identity headers itself.
func StripClientHeaders(h http.Header) {
	for k := range h {
		if IsClientHeaderDropped(k) {
			delete(h, k)
		}
	}
}

// SetIdentity replaces every identity header a client sent (all that
// StripClientHeaders drops) with who is asking, under erg's and
// Sandstorm's names. It is the one writer of these headers: the node's
// proxy calls it for its users, and the owner's node for a friend's.
func SetIdentity(h http.Header, userID, username string, permissions []string, sessionID string) {
	StripClientHeaders(h)
	// One array backs all eight values, a slot each; each slice is
	// capped, so adding to one header copies rather than overwrites the
	// next.
	perms := strings.Join(permissions, ",")
	v := [...]string{userID, userID, username, username, perms, perms, sessionID, sessionID}
	h["X-Erg-User-Id"], h["X-Sandstorm-User-Id"] = v[0:1:1], v[1:2:2]
	h["X-Erg-Username"], h["X-Sandstorm-Username"] = v[2:3:3], v[3:4:4]
	h["X-Erg-Permissions"], h["X-Sandstorm-Permissions"] = v[4:5:5], v[5:6:6]
	h["X-Erg-Session-Id"], h["X-Sandstorm-Session-Id"] = v[6:7:7], v[7:8:8]
}

func isUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") && h.Get("Upgrade") != ""
}

func writeHeaders(h http.Header, newList func(int32) (Header_List, error)) error {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	if n > maxHeaders {
		return fmt.Errorf("more than %d headers", maxHeaders)
	}
	list, err := newList(int32(n))
	if err != nil {
		return err
	}
	i := 0
	for k, vs := range h {
		for _, v := range vs {
			e := list.At(i)
			if err := e.SetName(k); err != nil {
				return err
			}
			if err := e.SetValue(v); err != nil {
				return err
			}
			i++
		}
	}
	return nil
}

// readHeaders decodes and checks a header list from the wire.
func readHeaders(list Header_List) (http.Header, error) {
	if list.Len() > maxHeaders {
		return nil, fmt.Errorf("more than %d headers", maxHeaders)
	}
	h := http.Header{}
	size := 0
	for i := 0; i < list.Len(); i++ {
		e := list.At(i)
		name, err := e.Name()
		if err != nil {
			return nil, err
		}
		value, err := e.Value()
		if err != nil {
			return nil, err
		}
		if size += len(name) + len(value); size > maxHeaderBytes {
			return nil, fmt.Errorf("headers larger than %d bytes", maxHeaderBytes)
		}
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("invalid header %q", name)
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	return h, nil
}
