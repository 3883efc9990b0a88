package erg

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestErrorKindsSurviveWrappingAndTheWire(t *testing.T) {
	tests := []struct {
		err  error
		kind Kind
		msg  string
	}{
		{fmt.Errorf("%w: no grain x", ErrNotFound), NotFound, "no grain x"},
		{E(Invalid, "bad title %q", "\x00"), Invalid, `bad title "\x00"`},
		{fmt.Errorf("install: %w", E(TooLarge, "the file is 2 MiB")), TooLarge, "install: too large: the file is 2 MiB"},
		{errors.New("disk on fire"), Internal, "disk on fire"},
		{ErrForbidden, Forbidden, "forbidden"},
	}
	for _, tc := range tests {
		if got := KindOf(tc.err); got != tc.kind {
			t.Errorf("KindOf(%q) = %v, want %v", tc.err, got, tc.kind)
		}
		if got := Message(tc.err); got != tc.msg {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.msg)
		}
		// Over the wire: the kind's name and the text, rebuilt as an Error.
		b, err := json.Marshal(ErrorReply{Error: tc.err.Error(), Kind: KindOf(tc.err)})
		if err != nil {
			t.Fatal(err)
		}
		var back ErrorReply
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		rebuilt := back.Err()
		if KindOf(rebuilt) != tc.kind || rebuilt.Error() != tc.err.Error() {
			t.Errorf("over JSON %s: got %v %q", b, KindOf(rebuilt), rebuilt)
		}
		for _, s := range []*Error{ErrNotFound, ErrInvalid, ErrForbidden, ErrUnauthorized, ErrTooLarge} {
			if errors.Is(rebuilt, s) != (s.Kind == tc.kind) {
				t.Errorf("errors.Is(%q, %v) = %v", rebuilt, s.Kind, errors.Is(rebuilt, s))
			}
		}
	}
	if ParseKind("from-the-future") != Internal {
		t.Error("an unknown kind should read as internal")
	}
}

// Every kind has an HTTP status of its own, and an answer that carries no
// kind is read back as the kind of its status.
func TestKindHTTPStatus(t *testing.T) {
	tests := []struct {
		kind Kind
		code int
	}{
		{Internal, 500}, {NotFound, 404}, {Invalid, 400}, {Forbidden, 403}, {Unauthenticated, 401},
		{Conflict, 409}, {TooLarge, 413}, {TooMany, 429}, {Unavailable, 503},
	}
	if len(tests) != len(kindNames) {
		t.Fatalf("%d kinds tested of %d", len(tests), len(kindNames))
	}
	for _, tc := range tests {
		if got := tc.kind.HTTPStatus(); got != tc.code {
			t.Errorf("%v.HTTPStatus() = %d, want %d", tc.kind, got, tc.code)
		}
		if got := kindOfStatus(tc.code); got != tc.kind {
			t.Errorf("kindOfStatus(%d) = %v, want %v", tc.code, got, tc.kind)
		}
	}
	for code, want := range map[int]Kind{502: Unavailable, 504: Unavailable, 418: Internal, 200: Internal} {
		if got := kindOfStatus(code); got != want {
			t.Errorf("kindOfStatus(%d) = %v, want %v", code, got, want)
		}
	}
}
