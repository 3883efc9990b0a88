package webui

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"erg"
)

// fakeClock is a settable clock for the update cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestUpdateCacheBoundsPageLoads checks that pages never queue on a slow
// store: one check runs at a time, a page with nothing cached waits only
// its bound, a stale answer is served at once while a check refreshes it,
// and a failed check is retried sooner than a good one.
func TestUpdateCacheBoundsPageLoads(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	var calls atomic.Int32
	release := make(chan struct{})
	answer := func() ([]erg.Listing, error) { return []erg.Listing{{AppID: "a", Version: 2}}, nil }
	var answerMu sync.Mutex
	c := &updateCache{now: clock.now, check: func(ctx context.Context) ([]erg.Listing, error) {
		calls.Add(1)
		<-release
		answerMu.Lock()
		defer answerMu.Unlock()
		return answer()
	}}
	ctx := context.Background()

	// A slow first check: concurrent pages each wait their bound, and
	// start one check between them.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if res := c.get(ctx, 20*time.Millisecond); !res.at.IsZero() || res.list != nil {
				t.Errorf("a page got %+v before the check ended", res)
			}
		})
	}
	wg.Wait()
	waitUntil(t, func() bool { return calls.Load() >= 1 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d checks for 5 pages, want 1", n)
	}
	release <- struct{}{}
	waitUntil(t, func() bool { return !c.get(ctx, 0).at.IsZero() })
	if res := c.get(ctx, 0); len(res.list) != 1 || res.list[0].AppID != "a" {
		t.Fatalf("after the check: %+v", res)
	}

	// Fresh: no new check.
	clock.add(updatesTTL - time.Second)
	c.get(ctx, 0)
	c.mu.Lock()
	started := c.running != nil
	c.mu.Unlock()
	if started {
		t.Fatal("a fresh answer started a check")
	}

	// Stale: served at once, and one check refreshes it.
	clock.add(2 * time.Second)
	answerMu.Lock()
	answer = func() ([]erg.Listing, error) { return nil, errors.New("no peers") }
	answerMu.Unlock()
	if res := c.get(ctx, time.Hour); len(res.list) != 1 {
		t.Fatalf("a stale answer was not served at once: %+v", res)
	}
	c.get(ctx, time.Hour)
	waitUntil(t, func() bool { return calls.Load() == 2 })
	release <- struct{}{}
	waitUntil(t, func() bool { return c.get(ctx, 0).err != nil })

	// A failed check is retried after updatesRetry, not updatesTTL.
	clock.add(updatesRetry + time.Second)
	c.get(ctx, 0)
	waitUntil(t, func() bool { return calls.Load() == 3 })
	release <- struct{}{}
	waitUntil(t, func() bool { return c.get(ctx, 0).at.Equal(clock.now()) })

	// Checking now asks the store whatever the cache holds.
	answerMu.Lock()
	answer = func() ([]erg.Listing, error) { return []erg.Listing{{AppID: "b", Version: 3}}, nil }
	answerMu.Unlock()
	go func() { release <- struct{}{} }()
	if res := c.checkNow(ctx); len(res.list) != 1 || res.list[0].AppID != "b" {
		t.Fatalf("check now: %+v", res)
	}
	if res := c.get(ctx, 0); len(res.list) != 1 || res.list[0].AppID != "b" {
		t.Fatalf("after check now the cache holds %+v", res)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShortPeer(t *testing.T) {
	for in, want := range map[string]string{
		"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo": "12D3KooW…CVe2Xo",
		"short": "short",
		"":      "",
	} {
		if got := shortPeer(in); got != want {
			t.Errorf("shortPeer(%q) = %q, want %q", in, got, want)
		}
	}
}
