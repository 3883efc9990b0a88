// Package appstore is the decentralized app store's protocol: signed
// listings kept in the DHT under /erg-app/ (their validator picks the
// highest version and refuses a bad signature), keyword search through
// providers of well-known keys and a stream protocol that returns their
// listings, and fetching a listed package's DAG over bitswap, checked
// against its signed descriptor. It knows nothing of what a node installed.
package appstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"erg/apppkg"
	"erg/p2p"
)

// ListingProtocol is how a searcher asks a publisher for its listings: it
// sends one frame holding a JSON listingRequest; the publisher answers with
// one frame per matching signed listing, at most maxListingsPerReply of
// them, and an empty frame at the end.
const ListingProtocol = "/erg/store/listings/1.0.0"

const (
	maxListingRequest   = 4 << 10
	maxListingsPerReply = 64
	// listingStall bounds how long a peer may keep a searcher waiting for
	// its next frame.
	listingStall = 3 * time.Second
)

type listingRequest struct {
	// Words are normalized search words; none asks for every listing.
	Words []string `json:"words"`
}

// Store is a node's part in the app store: the listings it publishes and
// serves to searchers, and the client side of search, lookup and package
// fetch.
type Store struct {
	h   *p2p.Host
	log *slog.Logger

	mu       sync.Mutex
	listings map[string][]byte // signed listings this node serves, by app id
}

// NewStore starts serving this node's listings on h.
func NewStore(h *p2p.Host, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{h: h, log: log, listings: map[string][]byte{}}
	h.Libp2p().SetStreamHandler(ListingProtocol, s.serveListings)
	return s
}

// Host is the p2p host the store runs on.
func (s *Store) Host() *p2p.Host { return s.h }

// Publish puts a signed listing in the DHT under its app's key, serves it
// to searchers, and announces this node as a provider of its keywords and
// its package. The package's blocks must already be in the blockstore.
func (s *Store) Publish(ctx context.Context, rec []byte) (*Listing, error) {
	l, err := ParseListing(rec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if old := s.listings[l.AppID]; old != nil {
		if ol, err := ParseListing(old); err == nil && ol.Version > l.Version {
			s.mu.Unlock()
			return nil, fmt.Errorf("publish %s: version %d is older than the published version %d", l.Name, l.Version, ol.Version)
		}
	}
	s.listings[l.AppID] = rec
	s.mu.Unlock()
	return l, s.announce(ctx, l, rec)
}

// Serve adds a signed listing to those this node answers searches with,
// without announcing it; Republish announces it later.
func (s *Store) Serve(rec []byte) error {
	l, err := ParseListing(rec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.listings[l.AppID]; old != nil {
		if ol, err := ParseListing(old); err == nil && ol.Version > l.Version {
			return nil
		}
	}
	s.listings[l.AppID] = rec
	return nil
}

func (s *Store) announce(ctx context.Context, l *Listing, rec []byte) error {
	if err := s.h.PutValue(ctx, ListingKey(l.AppID), rec); err != nil {
		return fmt.Errorf("publish %s: put listing: %w", l.Name, err)
	}
	var errs []error
	for _, w := range l.Keywords() {
		errs = append(errs, s.h.Provide(ctx, KeywordKey(w)))
	}
	for _, c := range []string{l.Package, l.Descriptor} {
		cc, _ := cid.Decode(c)
		errs = append(errs, s.h.Provide(ctx, cc))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish %s: %w", l.Name, err)
	}
	return nil
}

// Republish puts every served listing in the DHT again, so records do
// not expire while this node is up.
func (s *Store) Republish(ctx context.Context) {
	s.mu.Lock()
	recs := make([][]byte, 0, len(s.listings))
	for _, r := range s.listings {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	for _, rec := range recs {
		l, err := ParseListing(rec)
		if err != nil {
			continue
		}
		if err := s.announce(ctx, l, rec); err != nil && ctx.Err() == nil {
			s.log.Warn("republish", "app", l.AppID, "err", err)
		}
	}
}

// Lookup returns the newest listing of an app from the DHT.
func (s *Store) Lookup(ctx context.Context, appID string) (*Listing, error) {
	if _, err := apppkg.ParseAppID(appID); err != nil {
		return nil, err
	}
	rec, err := s.h.GetValue(ctx, ListingKey(appID))
	if errors.Is(err, p2p.ErrNotFound) {
		return nil, fmt.Errorf("no listing of app %s in the store: %w", appID, err)
	}
	if err != nil {
		return nil, fmt.Errorf("look up app %s: %w", appID, err)
	}
	// The DHT validated it already; check again here so a change there
	// cannot make us trust an unsigned record.
	return ParseListing(rec)
}

func (s *Store) serveListings(ns network.Stream) {
	st := p2p.WrapStream(ns, listingStall)
	defer st.Close()
	fr, err := st.ReadFrame(maxListingRequest)
	if err != nil {
		st.Reset()
		return
	}
	var req listingRequest
	if err := json.Unmarshal(fr, &req); err != nil || len(req.Words) > 32 {
		st.Reset()
		return
	}
	want := map[string]bool{}
	for _, w := range req.Words {
		want[NormalizeWord(w)] = true
	}
	s.mu.Lock()
	var out [][]byte
	for _, rec := range s.listings {
		l, err := ParseListing(rec)
		if err != nil {
			continue
		}
		match := len(want) == 0
		for _, w := range l.Keywords() {
			match = match || want[w]
		}
		if match && len(out) < maxListingsPerReply {
			out = append(out, rec)
		}
	}
	s.mu.Unlock()
	for _, rec := range out {
		if p2p.WriteFrame(st, rec) != nil {
			st.Reset()
			return
		}
	}
	p2p.WriteFrame(st, nil)
}

// FetchOptions tune FetchDAG.
type FetchOptions struct {
	Limits   apppkg.SizeLimits
	Progress func(p2p.FetchProgress)
	Stall    time.Duration
}

// DAGFetch is a package fetched into the node's blockstore, where
// apppkg.OpenDAG verifies it and Unpack reads it: nothing is copied. A
// caller that refuses the package calls Discard.
type DAGFetch struct {
	// Descriptor is the CID of the package's signed descriptor block.
	Descriptor cid.Cid
	fetched    []*p2p.Fetched
}

// Discard deletes the blocks the fetch added, leaving those the node held
// before. It is safe on nil.
func (f *DAGFetch) Discard(ctx context.Context) error {
	if f == nil {
		return nil
	}
	var errs []error
	for _, x := range f.fetched {
		errs = append(errs, x.Discard(ctx))
	}
	f.fetched = nil
	return errors.Join(errs...)
}

// FetchDAG fetches the package a listing names from any provider into the
// node's blockstore, for the caller to verify there with apppkg.OpenDAG.
// It refuses a listing whose package, app or version does not match the
// package's signed descriptor, and a DAG over opts.Limits.MaxPackage. On
// error nothing it fetched is kept.
func (s *Store) FetchDAG(ctx context.Context, l *Listing, opts FetchOptions) (_ *DAGFetch, err error) {
	lim := opts.Limits.WithDefaults()
	descCID, err := cid.Decode(l.Descriptor)
	if err != nil {
		return nil, fmt.Errorf("%w: descriptor CID: %v", ErrBadListing, err)
	}
	f := &DAGFetch{Descriptor: descCID}
	defer func() {
		if err != nil {
			f.Discard(context.WithoutCancel(ctx))
		}
	}()
	df, err := s.h.Fetch(ctx, descCID, p2p.FetchOptions{MaxBytes: 64 << 10, Stall: opts.Stall})
	f.fetched = append(f.fetched, df)
	if err != nil {
		return nil, fmt.Errorf("fetch the descriptor of %s: %w", l.Name, err)
	}
	blk, err := s.h.Blockstore().Get(ctx, descCID)
	if err != nil {
		return nil, err
	}
	d, err := apppkg.ParseDescriptor(blk.RawData())
	if err != nil {
		return nil, fmt.Errorf("the descriptor of %s: %w", l.Name, err)
	}
	if d.App != l.AppID || d.Version != l.Version || d.Root.String() != l.Package {
		return nil, fmt.Errorf("%w: the listing of %s names package %s version %d, but its signed descriptor names %s version %d of app %s",
			ErrBadListing, l.Name, l.Package, l.Version, d.Root, d.Version, d.App)
	}
	rf, err := s.h.Fetch(ctx, d.Root, p2p.FetchOptions{MaxBytes: lim.MaxPackage, Progress: opts.Progress, Stall: opts.Stall})
	f.fetched = append(f.fetched, rf)
	if err != nil {
		return nil, fmt.Errorf("fetch package %s of %s: %w", d.Root, l.Name, err)
	}
	return f, nil
}

// SearchResult is one app a search found.
type SearchResult struct {
	Listing
	// Score ranks results: name words count most, then tags, then the
	// summary.
	Score int `json:"score"`
	// Peers is how many publishers served this listing.
	Peers int `json:"peers"`
}

// SearchReport is what a search found, and what it refused and why.
type SearchReport struct {
	Results []SearchResult `json:"results"`
	// Problems say which peers sent what we refused (forged or oversized
	// listings, stalls).
	Problems []string `json:"problems,omitempty"`
	Peers    int      `json:"peers"` // publishers asked
}

func rank(results map[string]*SearchResult, words []string) []SearchResult {
	out := make([]SearchResult, 0, len(results))
	for _, r := range results {
		name, tags, summary := set(Words(r.Name)), set(r.Tags), set(Words(r.Summary))
		r.Score = 0
		for _, w := range words {
			if name[w] {
				r.Score += 3
			}
			if tags[w] {
				r.Score += 2
			}
			if summary[w] {
				r.Score++
			}
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].AppID < out[j].AppID
	})
	return out
}

func set(ws []string) map[string]bool {
	m := map[string]bool{}
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// ListingFor describes a verified package as a listing published by the
// peer publisher. Summary defaults to the manifest's description; tags are
// normalized and those left empty dropped.
func ListingFor(p *apppkg.Package, desc cid.Cid, publisher string, tags []string, summary string) *Listing {
	if summary == "" {
		summary = p.Manifest.Description
	}
	l := &Listing{
		AppID: p.AppID, Name: p.Manifest.Name, Summary: summary, Version: p.Version,
		DisplayVersion: p.Manifest.DisplayVersion, Package: p.CID.String(), Descriptor: desc.String(),
		Publisher: publisher,
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if t = NormalizeWord(t); t != "" && len(t) <= maxTagLen && !seen[t] && len(l.Tags) < maxTags {
			seen[t] = true
			l.Tags = append(l.Tags, t)
		}
	}
	if p.Manifest.Icon != "" {
		if c, ok := p.FileCID(p.Manifest.Icon); ok {
			l.Icon = c.String()
		}
	}
	return l
}
