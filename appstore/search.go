package appstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg/p2p"
)

// searchProviders bounds how many publishers one keyword's lookup returns.
const searchProviders = 20

// Search finds apps by words without any index: it finds the publishers
// that provide the keyword key of each word, asks each for its listings
// over ListingProtocol, verifies every signature, keeps the highest
// version of each app and ranks them. No words lists what the peers
// already known to publish serve. A peer that sends a forged, oversized or
// late answer is skipped and named in the report's problems.
func (s *Store) Search(ctx context.Context, query string) (*SearchReport, error) {
	words := Words(query)
	if len(words) == 0 {
		return nil, errors.New("search: no words to search for")
	}
	if len(words) > 8 {
		words = words[:8]
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	var mu sync.Mutex
	peers := map[peer.ID]peer.AddrInfo{}
	var wg sync.WaitGroup
	for _, w := range words {
		wg.Go(func() {
			for _, ai := range s.h.FindProviders(ctx, KeywordKey(w), searchProviders) {
				mu.Lock()
				peers[ai.ID] = ai
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	rep := &SearchReport{Peers: len(peers)}
	found := map[string]*SearchResult{}
	add := func(from string, rec []byte) {
		l, err := ParseListing(rec)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: refused a listing: %v", from, err))
			return
		}
		r := found[l.AppID]
		switch {
		case r == nil:
			found[l.AppID] = &SearchResult{Listing: *l, Peers: 1}
		case l.Version > r.Version:
			r.Listing = *l
			r.Peers++
		default:
			r.Peers++
		}
	}
	// This node's own listings count too.
	s.mu.Lock()
	for _, rec := range s.listings {
		if l, err := ParseListing(rec); err == nil && matches(l, words) {
			add("this node", rec)
		}
	}
	s.mu.Unlock()

	sem := make(chan struct{}, 8)
	for _, ai := range peers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			recs, err := s.askListings(ctx, ai, words)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("peer %s: %v", ai.ID, err))
			}
			for _, rec := range recs {
				add("peer "+ai.ID.String(), rec)
			}
		})
	}
	wg.Wait()
	rep.Results = rank(found, words)
	return rep, nil
}

func matches(l *Listing, words []string) bool {
	kw := set(l.Keywords())
	for _, w := range words {
		if kw[w] {
			return true
		}
	}
	return false
}

// askListings asks one peer for its listings matching words. It returns
// the records read before any error, unverified.
func (s *Store) askListings(ctx context.Context, ai peer.AddrInfo, words []string) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*listingStall)
	defer cancel()
	if err := s.h.Libp2p().Connect(ctx, ai); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	st, err := s.h.NewStream(ctx, ai.ID, ListingProtocol, listingStall)
	if err != nil {
		return nil, err
	}
	defer st.Reset()
	go func() {
		<-ctx.Done()
		st.Reset()
	}()
	req, _ := json.Marshal(listingRequest{Words: words})
	if err := p2p.WriteFrame(st, req); err != nil {
		return nil, err
	}
	st.CloseWrite()
	return readListings(func() ([]byte, error) { return st.ReadFrame(MaxListingSize) })
}

// readListings reads a listing reply, frame by frame, up to the empty
// frame that ends it; it refuses a reply of more than maxListingsPerReply
// listings or with a frame over MaxListingSize.
func readListings(next func() ([]byte, error)) ([][]byte, error) {
	var out [][]byte
	for {
		fr, err := next()
		if errors.Is(err, p2p.ErrTooLarge) {
			return out, fmt.Errorf("oversized response: a listing %w of %d bytes", p2p.ErrTooLarge, MaxListingSize)
		}
		if err != nil {
			return out, err
		}
		if len(fr) == 0 {
			return out, nil
		}
		if len(out) == maxListingsPerReply {
			return out, fmt.Errorf("oversized response: more than %d listings", maxListingsPerReply)
		}
		out = append(out, fr)
	}
}
