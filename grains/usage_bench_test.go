package grains

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkGrainsList: the owner's list of their grains, what the Grains
// page asks of grains, with n of them running; beside it, from the same
// run, one live read of every running grain's usage (sampleAll, what the
// sampler does every usagePeriod).
func BenchmarkGrainsList(b *testing.B) {
	s := testService(b)
	ctx := context.Background()
	running := 0
	for _, n := range []int{1, 10, 30} {
		for ; running < n; running++ {
			g, err := s.NewGrain(ctx, owner, "echo", fmt.Sprint("g", running))
			if err != nil {
				b.Fatal(err)
			}
			h, _ := s.Handle(g.ID)
			if err := try(h, "/"); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("running=%d", n), func(b *testing.B) {
			const reads = 200
			t0 := time.Now()
			for range reads {
				s.sampleAll()
			}
			live := time.Since(t0) / reads
			for b.Loop() {
				l, err := s.Local(ctx, owner)
				if err != nil || len(l) != n {
					b.Fatalf("%d grains listed (%v), want %d", len(l), err, n)
				}
			}
			list := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(list.Microseconds()), "list-us")
			b.ReportMetric(float64(live.Microseconds()), "live-reads-us")
			b.ReportMetric(float64(list)/float64(live), "list/live-reads")
		})
	}
}
