package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"erg"
)

// The JSON API answers an error with its kind's status (erg.Kind.HTTPStatus)
// and the kind in the body; the web layer's own errors have their own
// status, and one of no kind says it is internal.
func TestAPIErrorStatus(t *testing.T) {
	tests := []struct {
		err  error
		code int
		kind erg.Kind
	}{
		{erg.E(erg.Unavailable, "the friend's node is away"), 503, erg.Unavailable},
		{erg.E(erg.Conflict, "taken"), 409, erg.Conflict},
		{erg.E(erg.TooLarge, "2 MiB"), 413, erg.TooLarge},
		{fmt.Errorf("%w: no grain x", erg.ErrNotFound), 404, erg.NotFound},
		{fmt.Errorf("read: %w", errBodyTooSlow), 408, erg.Internal},
		{errors.New("disk on fire"), 500, erg.Internal},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		writeError(w, tc.err)
		var body erg.ErrorReply
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q: %v", tc.err, w.Body, err)
		}
		if w.Code != tc.code || body.Kind != tc.kind {
			t.Errorf("%q is answered %d with kind %v, want %d and %v", tc.err, w.Code, body.Kind, tc.code, tc.kind)
		}
		if tc.code == 500 && !strings.HasPrefix(body.Error, "internal error: ") {
			t.Errorf("an internal error reads %q", body.Error)
		}
	}
}
