package flight

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGateSharesOneFetch(t *testing.T) {
	var g Gate
	var calls atomic.Int64
	release := make(chan struct{})
	now := time.Unix(1000, 0)
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.Do(context.Background(), now, func() time.Duration {
			calls.Add(1)
			close(started)
			<-release
			return time.Minute
		})
	}()
	<-started
	results := make(chan bool, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- g.Do(context.Background(), now, func() time.Duration { calls.Add(1); return 0 })
		}()
	}
	close(release)
	wg.Wait()
	close(results)
	if calls.Load() != 1 {
		t.Fatalf("%d fetches, want 1", calls.Load())
	}
	// Callers that arrived after the flight ended are rate-limited (false);
	// the rest joined it (true). Either way nobody started a second fetch.
	for range results {
	}
}

func TestGateRateLimits(t *testing.T) {
	var g Gate
	var calls int
	now := time.Unix(1000, 0)
	fetch := func() time.Duration { calls++; return 10 * time.Second }
	if !g.Do(context.Background(), now, fetch) {
		t.Fatal("first fetch refused")
	}
	if g.Do(context.Background(), now.Add(9*time.Second), fetch) {
		t.Fatal("fetch within the interval admitted")
	}
	if !g.Do(context.Background(), now.Add(10*time.Second), fetch) {
		t.Fatal("fetch after the interval refused")
	}
	if calls != 2 {
		t.Fatalf("%d fetches, want 2", calls)
	}
}

func TestGateHonoursContext(t *testing.T) {
	var g Gate
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if g.Do(ctx, time.Unix(0, 0), func() time.Duration { <-release; return 0 }) {
		t.Fatal("waited despite a cancelled context")
	}
}
