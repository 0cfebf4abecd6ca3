// Package health tracks whether an OpenID provider's endpoint can be
// reached, so that a change is logged once — a warning when it stops
// answering, an info line when it answers again — and not on every
// failed call while it is down.
package health

import (
	"log/slog"
	"sync/atomic"
)

// The messages of the two log lines: stable, for alerts and searches.
const (
	Unreachable = "OpenID provider endpoint unreachable"
	Reachable   = "OpenID provider endpoint reachable again"
)

// Endpoint is the reachability of one endpoint. The zero value is an
// endpoint that answers.
type Endpoint struct{ down atomic.Bool }

// Record notes whether a call reached the endpoint (err nil) or not, and
// logs a change: Unreachable at warn with the error, Reachable at info,
// each with attrs (which name the endpoint). It reports whether the state
// changed; callers log the calls that change nothing at debug, if at all.
func (e *Endpoint) Record(logger *slog.Logger, err error, attrs ...any) bool {
	if err != nil {
		if e.down.Swap(true) {
			return false
		}
		logger.Warn(Unreachable, append(attrs, "error", err.Error())...)
		return true
	}
	if !e.down.Swap(false) {
		return false
	}
	logger.Info(Reachable, attrs...)
	return true
}

// Down reports whether the latest call failed.
func (e *Endpoint) Down() bool { return e.down.Load() }
