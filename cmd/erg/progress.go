package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"erg"
)

// progressEvery is how often a long backup or restore prints how far it
// has come: often enough to see it move, not a line per chunk.
const progressEvery = time.Second

// progressLines prints backup or restore progress on w, one line when the
// part worked on changes, when it is done, and at most every
// progressEvery in between.
func progressLines(w io.Writer) func(erg.BackupProgress) {
	var mu sync.Mutex
	var last erg.BackupProgress
	var at time.Time
	return func(p erg.BackupProgress) {
		mu.Lock()
		defer mu.Unlock()
		done := p.Files > 0 && p.FilesDone == p.Files && last.FilesDone != p.FilesDone
		if p == last || (p.Source == last.Source && p.SourcesDone == last.SourcesDone && !done && time.Since(at) < progressEvery) {
			return
		}
		fmt.Fprintln(w, p.String())
		last, at = p, time.Now()
	}
}

// watchProgress prints on w how far the node's backup run or restore has
// come while a call waits for it; stop ends it. A status the node cannot
// give is skipped: the call itself reports what went wrong.
func watchProgress(ctx context.Context, c *erg.Client, w io.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	show := progressLines(w)
	go func() {
		defer close(done)
		tick := time.NewTicker(progressEvery / 2)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			st, err := c.BackupStatus(ctx)
			if err == nil && st.Step != nil {
				show(*st.Step)
			}
		}
	}()
	return func() { cancel(); <-done }
}
