package verify

import (
	"context"
	"errors"
	"sync"
)

// RemoteKeySets hands out one RemoteKeySet per JWKS URL, all with the
// same options and background context, until Close stops them all. Share
// one between the users of a provider's keys so each document is cached
// and refreshed once.
type RemoteKeySets struct {
	ctx  context.Context
	opts RemoteOptions
	mu   sync.Mutex
	sets map[string]*RemoteKeySet // nil once closed
}

// NewRemoteKeySets returns an empty RemoteKeySets; ctx bounds the
// background refresh of every set it creates.
func NewRemoteKeySets(ctx context.Context, opts RemoteOptions) *RemoteKeySets {
	return &RemoteKeySets{ctx: ctx, opts: opts, sets: map[string]*RemoteKeySet{}}
}

// Get returns the key set for jwksURL, creating it on first use.
func (s *RemoteKeySets) Get(jwksURL string) (KeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ks, ok := s.sets[jwksURL]; ok {
		return ks, nil
	}
	if s.sets == nil {
		return nil, errors.New("verify: the key sets were closed")
	}
	ks, err := NewRemoteKeySet(s.ctx, jwksURL, s.opts)
	if err != nil {
		return nil, err
	}
	s.sets[jwksURL] = ks
	return ks, nil
}

// Close stops every set's background refresh; Get fails afterwards.
func (s *RemoteKeySets) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ks := range s.sets {
		ks.Close()
	}
	s.sets = nil
}

// FetchStats sums the FetchStats of every set (zero once closed).
func (s *RemoteKeySets) FetchStats() FetchStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum FetchStats
	for _, ks := range s.sets {
		st := ks.FetchStats()
		sum.OK += st.OK
		sum.Failed += st.Failed
	}
	return sum
}
