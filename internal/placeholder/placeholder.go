// Package placeholder resolves Caddy's global placeholders ({env.*},
// {file.*}, …) in module config values, once, at provisioning. It is
// shared by the gatehouse and devidp Caddy modules.
package placeholder

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// Resolver replaces placeholders in config values in place and collects
// one error per value that cannot be resolved (an unknown or empty
// placeholder), each naming the value. A secret's error never quotes the
// value, not even the part that looked like a placeholder.
type Resolver struct {
	prefix string
	repl   *caddy.Replacer
	errs   []error
}

// NewResolver returns a Resolver whose errors start with prefix (the
// module's name).
func NewResolver(prefix string) *Resolver {
	return &Resolver{prefix: prefix, repl: caddy.NewReplacer()}
}

// One resolves *v, named name in errors.
func (r *Resolver) One(name string, v *string) { r.resolve(name, v, false) }

// Secret resolves *v like One, with an error that does not quote it.
func (r *Resolver) Secret(name string, v *string) { r.resolve(name, v, true) }

// Many resolves every element of vs.
func (r *Resolver) Many(name string, vs []string) {
	for i := range vs {
		r.resolve(name, &vs[i], false)
	}
}

// Secrets resolves every element of vs like Secret.
func (r *Resolver) Secrets(name string, vs []string) {
	for i := range vs {
		r.resolve(name, &vs[i], true)
	}
}

// Err returns the errors collected so far, joined, or nil.
func (r *Resolver) Err() error { return errors.Join(r.errs...) }

func (r *Resolver) resolve(name string, v *string, secret bool) {
	if *v == "" {
		return
	}
	out, err := r.repl.ReplaceOrErr(*v, true, true)
	switch {
	case err == nil:
		*v = out
	case secret:
		r.errs = append(r.errs, fmt.Errorf("%s: %s: a placeholder in it is unknown or empty (is the environment variable or file there?)", r.prefix, name))
	default:
		r.errs = append(r.errs, fmt.Errorf("%s: %s: %w", r.prefix, name, err))
	}
}
