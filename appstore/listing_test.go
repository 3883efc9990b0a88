package appstore

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"erg/apppkg"
)

const testCID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

func testListing(key ed25519.PrivateKey, version int64) *Listing {
	return &Listing{
		AppID: apppkg.AppID(key.Public().(ed25519.PublicKey)), Name: "Notes", Summary: "Write things down",
		Tags: []string{"notes", "writing"}, Version: version, DisplayVersion: "1.0",
		Package: testCID, Descriptor: testCID, Publisher: "12D3KooWtest",
	}
}

func signT(t testing.TB, l *Listing, key ed25519.PrivateKey) []byte {
	t.Helper()
	rec, err := SignListing(l, key)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestListingValidator(t *testing.T) {
	key, other := testKey(1), testKey(2)
	l := testListing(key, 2)
	rec := signT(t, l, key)
	v := ListingValidator{}
	k := ListingKey(l.AppID)
	if err := v.Validate(k, rec); err != nil {
		t.Fatalf("valid listing refused: %v", err)
	}
	got, err := ParseListing(rec)
	if err != nil || got.Name != "Notes" || got.Version != 2 || len(got.Tags) != 2 {
		t.Fatalf("ParseListing = %+v, %v", got, err)
	}

	// A listing that claims app key's id but is signed by another key.
	forged := append([]byte{}, rec[:len(rec)-ed25519.SignatureSize]...)
	body := forged[len(listingMagic)+1:]
	forged = append(forged, ed25519.Sign(other, listingSigned(k, body))...)
	// The same body with one byte changed after signing.
	tampered := bytes.Replace(rec, []byte("Write things"), []byte("Wrote things"), 1)
	otherRec := signT(t, testListing(other, 9), other)
	bad := map[string]struct {
		key, want string
		rec       []byte
	}{
		"signed by another key":   {k, "bad signature", forged},
		"tampered":                {k, "bad signature", tampered},
		"under another app's key": {k, "stored under", otherRec},
		"empty":                   {k, "not an erg listing", nil},
		"truncated":               {k, "truncated", rec[:len(rec)-1]},
		"trailing bytes":          {k, "trailing", append(append([]byte{}, rec...), 0)},
		"oversized":               {k, "over the size limit", append(append([]byte{}, rec...), make([]byte, MaxListingSize)...)},
	}
	for name, c := range bad {
		err := v.Validate(c.key, c.rec)
		if err == nil || !errors.Is(err, ErrBadListing) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want %q", name, err, c.want)
		}
	}

	for name, mut := range map[string]func(*Listing){
		"unsigned tag":    func(l *Listing) { l.Tags = []string{"Not Normal"} },
		"bad package":     func(l *Listing) { l.Package = "zzz" },
		"version 0":       func(l *Listing) { l.Version = 0 },
		"no name":         func(l *Listing) { l.Name = " " },
		"no publisher":    func(l *Listing) { l.Publisher = "" },
		"too many tags":   func(l *Listing) { l.Tags = strings.Fields(strings.Repeat("a ", 17)) },
		"control in name": func(l *Listing) { l.Name = "a\x1bb" },
	} {
		l := testListing(key, 1)
		mut(l)
		if _, err := SignListing(l, key); err == nil {
			t.Errorf("%s: SignListing accepted it", name)
		}
	}
	if _, err := SignListing(testListing(key, 1), other); err == nil || !strings.Contains(err.Error(), "not") {
		t.Errorf("signing app key's listing with another key: %v", err)
	}
}

func TestListingSelectHighestVersion(t *testing.T) {
	key := testKey(1)
	k := ListingKey(apppkg.AppID(key.Public().(ed25519.PublicKey)))
	v1, v3, v2 := signT(t, testListing(key, 1), key), signT(t, testListing(key, 3), key), signT(t, testListing(key, 2), key)
	forged := append(bytes.Clone(v3[:len(v3)-1]), v3[len(v3)-1]^1)
	forged = bytes.Replace(forged, []byte(`"version":3`), []byte(`"version":9`), 1)
	i, err := ListingValidator{}.Select(k, [][]byte{v1, forged, v3, v2})
	if err != nil || i != 2 {
		t.Fatalf("Select = %d, %v; want 2 (version 3, the forged version 9 ignored)", i, err)
	}
	other := testListing(key, 3)
	other.Summary = "another summary"
	v3b := signT(t, other, key)
	a, _ := ListingValidator{}.Select(k, [][]byte{v3, v3b})
	b, _ := ListingValidator{}.Select(k, [][]byte{v3b, v3})
	if [][]byte{v3, v3b}[a] == nil || !bytes.Equal([][]byte{v3, v3b}[a], [][]byte{v3b, v3}[b]) {
		t.Error("Select of two equal versions depends on their order")
	}
	if _, err := (ListingValidator{}).Select(k, [][]byte{forged}); err == nil {
		t.Error("Select chose among only invalid records")
	}
}

func TestKeywords(t *testing.T) {
	l := testListing(testKey(1), 1)
	l.Name = "Notes & To-Do"
	got := strings.Join(l.Keywords(), " ")
	if got != "notes writing to do" {
		t.Errorf("Keywords = %q", got)
	}
	if KeywordKey("Notes") != KeywordKey("notes") || KeywordKey("notes") == KeywordKey("todo") {
		t.Error("keyword keys do not normalize or collide")
	}
}
