package flow

import (
	"sync"
	"sync/atomic"

	"github.com/gatehouse-auth/gatehouse/verify"
)

// lazyVerifier holds a verify.Verifier built on first use, once the
// provider's metadata is known; concurrent first users build it once.
type lazyVerifier struct {
	mu sync.Mutex // serializes build
	v  atomic.Pointer[verify.Verifier]
}

// load returns the verifier, or nil before it is built.
func (l *lazyVerifier) load() *verify.Verifier { return l.v.Load() }

// build returns the verifier, building it with fn if no one has yet. A
// failed build is tried again by the next caller.
func (l *lazyVerifier) build(fn func() (*verify.Verifier, error)) (*verify.Verifier, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v := l.v.Load(); v != nil {
		return v, nil
	}
	v, err := fn()
	if err != nil {
		return nil, err
	}
	l.v.Store(v)
	return v, nil
}
