package flow

import (
	"context"
	"errors"
	"fmt"
)

// keySetHealth is what a key set can say about the provider's reachability
// (verify.RemoteKeySet has it; static key sets do not).
type keySetHealth interface {
	// Err is the latest fetch's error, nil after a success.
	Err() error
	// Probe fetches again when the refetch limit allows and returns Err.
	Probe(ctx context.Context) error
}

// Available tells whether a login can start: whether the provider can be
// reached now, by what gatehouse already knows — its JWKS fetches (on
// demand and in the background) and its recent calls to the token and
// userinfo endpoints. While either failed, it probes the JWKS again (at
// most once per refetch interval) and answers ErrProviderUnavailable until
// a probe succeeds. A healthy provider costs no network call.
func (p *Provider) Available(ctx context.Context, meta *Metadata) error {
	if p.opts.Plain {
		return nil // no keys to probe; the token endpoint tells at the callback
	}
	ks, err := p.KeySet(meta.Endpoints.JWKS)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	h, ok := ks.(keySetHealth)
	if !ok || !p.suspect.Load() && h.Err() == nil {
		return nil
	}
	if err := h.Probe(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	p.suspect.Store(false)
	return nil
}

// observe records what a call to the provider (token, userinfo endpoint)
// says about its reachability: ErrProviderUnavailable makes it suspect,
// anything else (an answer, even a refusal) clears that.
func (p *Provider) observe(err error) {
	p.suspect.Store(errors.Is(err, ErrProviderUnavailable))
}

// observeToken is observe for a call to the token endpoint, whose
// reachability changes are logged too: one warning when it stops
// answering, one info line when it answers again (an answer may be a
// refusal). A call whose ctx ended (the client went away) tells nothing.
func (p *Provider) observeToken(ctx context.Context, err error) {
	p.observe(err)
	if ctx.Err() != nil {
		return
	}
	var down error
	if errors.Is(err, ErrProviderUnavailable) {
		down = err
	}
	p.token.Record(p.opts.Logger, down, "issuer", p.opts.Issuer, "endpoint", "token")
}
