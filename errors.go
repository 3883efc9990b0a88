package erg

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind says what sort of failure an error is, so a caller can decide on it
// without reading its text. It travels with the error over HTTP and
// between nodes.
type Kind uint8

const (
	Internal        Kind = iota // a fault of the node's, not the caller's
	NotFound                    // no such thing, or not one the caller may know of
	Invalid                     // the request is malformed or breaks a rule
	Forbidden                   // the caller is known but may not do this
	Unauthenticated             // the caller is not signed in, or its credentials are bad
	Conflict                    // the thing exists already, or changed meanwhile
	TooLarge                    // over a size limit
	TooMany                     // over a rate or count limit; try again later
	Unavailable                 // a peer or resource cannot be reached now
)

var kindNames = [...]struct {
	wire, text string
	status     int // HTTPStatus
}{
	Internal:        {"internal", "internal error", http.StatusInternalServerError},
	NotFound:        {"not_found", "not found", http.StatusNotFound},
	Invalid:         {"invalid", "invalid request", http.StatusBadRequest},
	Forbidden:       {"forbidden", "forbidden", http.StatusForbidden},
	Unauthenticated: {"unauthenticated", "not signed in", http.StatusUnauthorized},
	Conflict:        {"conflict", "conflict", http.StatusConflict},
	TooLarge:        {"too_large", "too large", http.StatusRequestEntityTooLarge},
	TooMany:         {"too_many", "too many requests", http.StatusTooManyRequests},
	Unavailable:     {"unavailable", "unavailable", http.StatusServiceUnavailable},
}

// String is the kind as a person reads it.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k].text
	}
	return kindNames[Internal].text
}

// HTTPStatus is the status an HTTP answer carrying an error of kind k
// has: the JSON API's, and the client reads a kind back from it when an
// answer has none (kindOfStatus).
func (k Kind) HTTPStatus() int {
	if int(k) < len(kindNames) {
		return kindNames[k].status
	}
	return kindNames[Internal].status
}

// MarshalText gives the kind's wire name, e.g. "not_found".
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) < len(kindNames) {
		return []byte(kindNames[k].wire), nil
	}
	return []byte(kindNames[Internal].wire), nil
}

// UnmarshalText reads a wire name; an unknown one is Internal, so a newer
// peer's kind degrades rather than fails.
func (k *Kind) UnmarshalText(b []byte) error {
	*k = ParseKind(string(b))
	return nil
}

// ParseKind reads a kind's wire name; an unknown name is Internal.
func ParseKind(s string) Kind {
	for i, n := range kindNames {
		if n.wire == s {
			return Kind(i)
		}
	}
	return Internal
}

// Error is an error with a kind. The sentinels below are Errors with no
// message; an Error matches a sentinel of its kind with errors.Is, so an
// error rebuilt from the wire (by the client, or from a friend's node)
// still tells its kind.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.String()
	}
	return e.Msg
}

// Is matches the sentinel of e's kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Kind == e.Kind
}

// The sentinels: wrap one to give an error its kind,
// fmt.Errorf("%w: no grain %s", erg.ErrNotFound, id), or use E.
var (
	ErrNotFound     = &Error{Kind: NotFound}
	ErrInvalid      = &Error{Kind: Invalid}
	ErrForbidden    = &Error{Kind: Forbidden}
	ErrUnauthorized = &Error{Kind: Unauthenticated}
	ErrConflict     = &Error{Kind: Conflict}
	ErrTooLarge     = &Error{Kind: TooLarge}
	ErrTooMany      = &Error{Kind: TooMany}
	ErrUnavailable  = &Error{Kind: Unavailable}
)

// E makes an error of kind k whose text is the kind's, a colon, and the
// formatted message; %w in format wraps as fmt.Errorf does.
func E(k Kind, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{&Error{Kind: k}}, args...)...)
}

// KindOf is the kind of err: that of the first Error in its chain, or
// Internal for an error without one.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Message is err's text without its kind's prefix, for showing a person
// ("not found: no grain x" reads "no grain x").
func Message(err error) string {
	msg := err.Error()
	if k := KindOf(err); k != Internal {
		if rest, ok := cutPrefix(msg, k.String()+": "); ok {
			return rest
		}
	}
	return msg
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}
