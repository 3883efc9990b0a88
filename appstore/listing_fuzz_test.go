package appstore

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"erg/p2p"
)

// FuzzParseListing checks that no record makes the parser panic, and that
// whatever it accepts is signed, well formed and survives a round trip.
func FuzzParseListing(f *testing.F) {
	key := testKey(1)
	f.Add(signT(f, testListing(key, 1), key))
	f.Add([]byte(listingMagic + "\x02{}"))
	f.Fuzz(func(t *testing.T, rec []byte) {
		l, err := ParseListing(rec)
		if err != nil {
			if !errors.Is(err, ErrBadListing) {
				t.Fatalf("error does not wrap ErrBadListing: %v", err)
			}
			return
		}
		if err := l.Check(); err != nil {
			t.Fatalf("accepted a listing that fails Check: %v", err)
		}
		if err := (ListingValidator{}).Validate(ListingKey(l.AppID), rec); err != nil {
			t.Fatalf("ParseListing accepted what Validate refuses: %v", err)
		}
	})
}

// FuzzListingStream feeds arbitrary bytes to the reader of a listing reply
// and checks it never returns more than it may or records over the limit.
func FuzzListingStream(f *testing.F) {
	key := testKey(1)
	var ok bytes.Buffer
	p2p.WriteFrame(&ok, signT(f, testListing(key, 1), key))
	p2p.WriteFrame(&ok, nil)
	f.Add(ok.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		recs, _ := readListings(func() ([]byte, error) { return p2p.ReadFrame(br, MaxListingSize) })
		if len(recs) > maxListingsPerReply {
			t.Fatalf("read %d listings", len(recs))
		}
		for _, r := range recs {
			if len(r) > MaxListingSize {
				t.Fatalf("a record of %d bytes", len(r))
			}
			ParseListing(r)
		}
	})
}
