package powerbox

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"erg"
)

// The bridge answers a refusal with the JSON API's status for its kind,
// but 502 for unavailable (the target did not answer, or cannot be
// reached), and with the kind in the body either way.
func TestBridgeRefusalStatus(t *testing.T) {
	tests := []struct {
		kind erg.Kind
		code int
	}{
		{erg.NotFound, 404}, {erg.Invalid, 400}, {erg.Forbidden, 403}, {erg.Unauthenticated, 401},
		{erg.Conflict, 409}, {erg.TooLarge, 413}, {erg.TooMany, 429}, {erg.Internal, 500},
		{erg.Unavailable, 502},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		bridgeError(w, erg.E(tc.kind, "refused"), 0)
		var body erg.ErrorReply
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q: %v", tc.kind, w.Body, err)
		}
		if w.Code != tc.code || body.Kind != tc.kind {
			t.Errorf("a refusal of kind %v is answered %d with kind %v, want %d", tc.kind, w.Code, body.Kind, tc.code)
		}
	}
}
