// Package flight runs one expensive fetch at a time, shared by every caller
// that arrives while it runs, and spaces the starts of fetches. It is a
// singleflight with a rate limit on starting flights: what the JWKS refetch
// (a flood of unknown key ids) and provider discovery (backoff while the
// provider is down) both need.
package flight

import (
	"context"
	"sync"
	"time"
)

// Gate admits fetches. The zero value is ready to use.
type Gate struct {
	mu     sync.Mutex
	flight chan struct{} // closed when the running fetch ends; nil when none runs
	next   time.Time     // no new fetch starts before this
}

// Do joins the fetch in progress or, when none runs and now is not before
// the time the previous fetch allowed, starts fetch in its own goroutine.
// It then waits until that fetch ends or ctx is done. fetch returns how long
// after its start no other fetch may begin. Do reports whether it waited for
// a fetch to the end; false means the rate limit turned it away or ctx ended.
func (g *Gate) Do(ctx context.Context, now time.Time, fetch func() (wait time.Duration)) bool {
	g.mu.Lock()
	flight := g.flight
	if flight == nil {
		if now.Before(g.next) {
			g.mu.Unlock()
			return false
		}
		flight = make(chan struct{})
		g.flight = flight
		go func() {
			wait := fetch()
			g.mu.Lock()
			g.next = now.Add(wait)
			g.flight = nil
			g.mu.Unlock()
			close(flight)
		}()
	}
	g.mu.Unlock()
	select {
	case <-flight:
		return true
	case <-ctx.Done():
		return false
	}
}

// Reset lifts the rate limit: the next Do may start a fetch at once. A
// fetch in progress sets its own limit when it ends.
func (g *Gate) Reset() {
	g.mu.Lock()
	g.next = time.Time{}
	g.mu.Unlock()
}
