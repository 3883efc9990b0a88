package appstore

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"erg/apppkg"
)

// ListingNamespace is the DHT namespace of app listings: the listing of
// app A lives under /erg-app/A.
const ListingNamespace = "erg-app"

// ListingKey is the DHT key of an app's listing.
func ListingKey(appID string) string { return "/" + ListingNamespace + "/" + appID }

// Listing is what the store says about one version of an app. The app's
// key signs it, so any node can pass it on and nobody can change it.
type Listing struct {
	AppID          string   `json:"app"`
	Name           string   `json:"name"`
	Summary        string   `json:"summary,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion,omitempty"`
	// Package is the CID of the package's UnixFS root, the package id.
	Package string `json:"package"`
	// Descriptor is the CID of the package's signed descriptor block,
	// which names Package; installers fetch it first.
	Descriptor string `json:"descriptor"`
	// Icon is the CID of the icon file inside the package, if it has one.
	Icon string `json:"icon,omitempty"`
	// Publisher is the peer id of the node that published this version.
	Publisher string `json:"publisher"`
}

// Limits on a listing, so a record stays small enough for the DHT and a
// listing stream can bound what it reads.
const (
	MaxListingSize = 8 << 10
	maxTags        = 16
	maxTagLen      = 32
	maxSummary     = 1000
	maxNameLen     = 100
)

// A signed listing is: the magic line, a uvarint length, the listing as
// JSON, and a 64-byte ed25519 signature by the app's key over
// listingDomain, the DHT key and the JSON. Binding the key stops a valid
// listing of one app being stored under another's key.
const (
	listingMagic  = "erg-listing-v1\n"
	listingDomain = "erg-listing-v1\x00"
)

// Check refuses a listing with a missing or malformed field.
func (l *Listing) Check() error {
	if _, err := apppkg.ParseAppID(l.AppID); err != nil {
		return err
	}
	if strings.TrimSpace(l.Name) == "" || len(l.Name) > maxNameLen || !printable(l.Name) {
		return fmt.Errorf("listing name must be 1 to %d printable characters", maxNameLen)
	}
	if len(l.Summary) > maxSummary || !printable(l.Summary) {
		return fmt.Errorf("listing summary must be at most %d printable characters", maxSummary)
	}
	if len(l.DisplayVersion) > 64 || !printable(l.DisplayVersion) {
		return errors.New("listing display version must be at most 64 printable characters")
	}
	if l.Version < 1 {
		return fmt.Errorf("listing version %d: versions start at 1", l.Version)
	}
	if len(l.Tags) > maxTags {
		return fmt.Errorf("listing has %d tags; at most %d", len(l.Tags), maxTags)
	}
	for _, t := range l.Tags {
		if t == "" || len(t) > maxTagLen || NormalizeWord(t) != t {
			return fmt.Errorf("listing tag %q: tags are lowercase letters and digits, at most %d", t, maxTagLen)
		}
	}
	for name, s := range map[string]string{"package": l.Package, "descriptor": l.Descriptor, "icon": l.Icon} {
		if s == "" && name == "icon" {
			continue
		}
		c, err := cid.Decode(s)
		if err != nil {
			return fmt.Errorf("listing %s CID %q: %v", name, s, err)
		}
		if err := apppkg.CheckCID(c); err != nil {
			return fmt.Errorf("listing %s: %w", name, err)
		}
	}
	if l.Publisher == "" || len(l.Publisher) > 128 || !printable(l.Publisher) {
		return errors.New("listing has no publisher peer id")
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// SignListing checks l and signs it with the app's key.
func SignListing(l *Listing, key ed25519.PrivateKey) ([]byte, error) {
	if id := apppkg.AppID(key.Public().(ed25519.PublicKey)); id != l.AppID {
		return nil, fmt.Errorf("sign listing: the key is app %s's, not %s's", id, l.AppID)
	}
	if err := l.Check(); err != nil {
		return nil, fmt.Errorf("sign listing: %w", err)
	}
	body, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	rec := append([]byte(listingMagic), binary.AppendUvarint(nil, uint64(len(body)))...)
	rec = append(rec, body...)
	rec = append(rec, ed25519.Sign(key, listingSigned(ListingKey(l.AppID), body))...)
	if len(rec) > MaxListingSize {
		return nil, fmt.Errorf("sign listing: the record is %d bytes: %w of %d", len(rec), apppkg.ErrTooLarge, MaxListingSize)
	}
	return rec, nil
}

func listingSigned(key string, body []byte) []byte {
	b := append([]byte(listingDomain), key...)
	b = append(b, 0)
	return append(b, body...)
}

// ErrBadListing is wrapped by every error about a listing record that is
// malformed or not signed by its app's key.
var ErrBadListing = errors.New("bad listing")

// ParseListing verifies a signed listing record: its form, that every field
// is well formed, and that the key its app id names signed it.
func ParseListing(rec []byte) (*Listing, error) {
	l, err := parseListing(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadListing, err)
	}
	return l, nil
}

func parseListing(rec []byte) (*Listing, error) {
	if len(rec) > MaxListingSize {
		return nil, fmt.Errorf("record is %d bytes: %w of %d", len(rec), apppkg.ErrTooLarge, MaxListingSize)
	}
	rest, ok := bytes.CutPrefix(rec, []byte(listingMagic))
	if !ok {
		return nil, errors.New("not an erg listing record")
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) || uint64(len(rest)-k)-n != ed25519.SignatureSize {
		return nil, errors.New("record is truncated or has trailing bytes")
	}
	body, sig := rest[k:k+int(n)], rest[k+int(n):]
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var l Listing
	if err := dec.Decode(&l); err != nil || dec.More() {
		return nil, fmt.Errorf("listing is not valid JSON: %v", err)
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	pub, _ := apppkg.ParseAppID(l.AppID)
	if !ed25519.Verify(pub, listingSigned(ListingKey(l.AppID), body), sig) {
		return nil, fmt.Errorf("bad signature: the listing is not signed by the key of app %s", l.AppID)
	}
	return &l, nil
}

// ListingValidator is the DHT record validator for the /erg-app/
// namespace: a record is valid only if it is a listing signed by the key
// its DHT key names, and of several the highest version wins.
type ListingValidator struct{}

// Validate implements record.Validator.
func (ListingValidator) Validate(key string, value []byte) error {
	l, err := ParseListing(value)
	if err != nil {
		return err
	}
	if key != ListingKey(l.AppID) {
		return fmt.Errorf("%w: the listing of app %s is stored under %q", ErrBadListing, l.AppID, key)
	}
	return nil
}

// Select implements record.Validator: the valid record with the highest
// version, and of equal versions the greater bytes, so every node picks
// the same one.
func (v ListingValidator) Select(key string, values [][]byte) (int, error) {
	best, bestVer := -1, int64(0)
	for i, val := range values {
		if v.Validate(key, val) != nil {
			continue
		}
		l, _ := ParseListing(val)
		if best < 0 || l.Version > bestVer || l.Version == bestVer && bytes.Compare(val, values[best]) > 0 {
			best, bestVer = i, l.Version
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid listing among %d records", ErrBadListing, len(values))
	}
	return best, nil
}

// NormalizeWord lowercases a search word or tag and keeps only its letters
// and digits.
func NormalizeWord(w string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, w)
}

// Words splits text into normalized search words.
func Words(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if w := NormalizeWord(f); w != "" && len(w) <= maxTagLen && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// KeywordKey is the well-known DHT key a publisher provides for a word:
// the CID of "erg/store/v1/tag/<word>". Tags and the words of an app's name
// share it, so one search finds both.
func KeywordKey(word string) cid.Cid {
	h, _ := mh.Sum([]byte("erg/store/v1/tag/"+NormalizeWord(word)), mh.SHA2_256, -1)
	return cid.NewCidV1(uint64(multicodec.Raw), h)
}

// Keywords are the words a listing is found by: its tags and the words of
// its name.
func (l *Listing) Keywords() []string {
	return Words(strings.Join(append(append([]string{}, l.Tags...), l.Name), " "))
}
