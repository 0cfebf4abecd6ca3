package assertion

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Errors of Signer.Token.
var (
	// ErrIncompleteClaims: the claims lack a subject, an audience or
	// NotAfter.
	ErrIncompleteClaims = errors.New("assertion: claims need an issuer, a subject, an audience and NotAfter")
	// ErrSessionEnded: NotAfter leaves less than a second, so no
	// assertion can be issued.
	ErrSessionEnded = errors.New("assertion: the session ends before an assertion could be valid")
	// ErrExtraClaim: an Extra value of a type the package does not carry
	// (see Claims.Extra), nested too deep, or unencodable.
	ErrExtraClaim = errors.New("assertion: unsupported extra claim")
)

// Claims are what one assertion says about the user.
type Claims struct {
	// Issuer is `iss`, when it is not Options.Issuer: a gateway that
	// serves several sites names the one the request came to.
	Issuer string
	// Subject is `sub`: who the user is. Required.
	Subject string
	// Email is `email`, left out when empty.
	Email string
	// Groups is `groups`, left out when empty.
	Groups []string
	// Audience is `aud`: the upstream the assertion is for. Required.
	Audience string
	// Extra are further claims. A name Reserved reports is left out: the
	// registered claims and email/groups always come from the fields
	// above. Values may be nil, string, bool, the Go integer and float
	// types, json.Number, []string, []any and map[string]any of those
	// (nested at most 8 deep); anything else is ErrExtraClaim.
	Extra map[string]any
	// NotAfter is when the session (or the bearer token) behind the
	// request ends: `exp` is never past it. Required.
	NotAfter time.Time
}

// reserved are the claims Extra cannot set.
var reserved = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"email": true, "groups": true,
}

// Reserved reports whether Claims.Extra cannot set the claim name: the
// registered claims (iss, sub, aud, exp, iat, nbf, jti) and email and
// groups. A configuration naming one is better refused when it is loaded.
func Reserved(name string) bool { return reserved[name] }

// maxExtraDepth bounds the nesting of Extra values (and catches cycles).
const maxExtraDepth = 8

// payload is the JSON of the claims the Signer always sets.
type payload struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience string   `json:"aud"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
}

// encode returns the JSON claims set: the registered claims, then the
// non-reserved Extra claims in name order.
func (c *Claims) encode(issuer string, iat, exp int64) ([]byte, error) {
	out, err := json.Marshal(payload{
		Issuer: issuer, Subject: c.Subject, Audience: c.Audience,
		Email: c.Email, Groups: c.Groups, IssuedAt: iat, Expiry: exp,
	})
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding claims: %w", err)
	}
	if len(c.Extra) == 0 {
		return out, nil
	}
	out = out[:len(out)-1] // reopen the object
	for _, name := range slices.Sorted(maps.Keys(c.Extra)) {
		if reserved[name] {
			continue
		}
		n, err := json.Marshal(name)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrExtraClaim, name, err)
		}
		v, err := json.Marshal(c.Extra[name])
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrExtraClaim, name, err)
		}
		out = append(append(append(append(out, ','), n...), ':'), v...)
	}
	return append(out, '}'), nil
}

// check refuses incomplete claims and Extra values of other types.
func (c *Claims) check() error {
	if c.Subject == "" || c.Audience == "" || c.NotAfter.IsZero() {
		return ErrIncompleteClaims
	}
	for name, v := range c.Extra {
		if name == "" {
			return fmt.Errorf("%w: empty name", ErrExtraClaim)
		}
		if err := checkValue(v, 0); err != nil {
			return fmt.Errorf("%w %q: %v", ErrExtraClaim, name, err)
		}
	}
	return nil
}

func checkValue(v any, depth int) error {
	if depth > maxExtraDepth {
		return errors.New("nested too deep")
	}
	switch v := v.(type) {
	case nil, string, bool, float32, float64, json.Number,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, []string:
		return nil
	case []any:
		for _, e := range v {
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for _, e := range v {
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("type %T", v)
}

// clone is a deep copy of c (which check accepted) for a cache entry, so
// a caller changing its slices and maps later cannot change the entry.
func (c *Claims) clone() Claims {
	d := *c
	d.Groups = slices.Clone(c.Groups)
	if c.Extra != nil {
		d.Extra = cloneValue(c.Extra).(map[string]any)
	}
	return d
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case []string:
		return slices.Clone(v)
	case []any:
		d := make([]any, len(v))
		for i, e := range v {
			d[i] = cloneValue(e)
		}
		return d
	case map[string]any:
		d := make(map[string]any, len(v))
		for k, e := range v {
			d[k] = cloneValue(e)
		}
		return d
	}
	return v
}

// sameClaims reports whether c says what e (an entry's claims) says,
// NotAfter aside. It does not allocate.
func sameClaims(e, c *Claims) bool {
	return e.Issuer == c.Issuer && e.Subject == c.Subject && e.Audience == c.Audience && e.Email == c.Email &&
		slices.Equal(e.Groups, c.Groups) && sameMap(e.Extra, c.Extra, 0)
}

// sameValue compares a value of an entry (of a type check accepts) with
// anything. Values of different dynamic types are different; since a is
// of an accepted type, the == below only compares comparable values.
func sameValue(a, b any, depth int) bool {
	if depth > maxExtraDepth {
		return false
	}
	switch a := a.(type) {
	case []string:
		b, ok := b.([]string)
		return ok && slices.Equal(a, b) && (a == nil) == (b == nil)
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) || (a == nil) != (b == nil) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i], depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && (a == nil) == (b == nil) && sameMap(a, b, depth+1)
	}
	return a == b
}

func sameMap(a, b map[string]any, depth int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !sameValue(av, bv, depth) {
			return false
		}
	}
	return true
}
