package identity

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors of Map.
var (
	// ErrIncomplete: the claims lack the subject or the configured user claim.
	ErrIncomplete = errors.New("identity: the provider did not send the subject or the configured user claim")
	// ErrUnverifiedEmail: the user claim is the e-mail, and the provider
	// did not vouch for it — anyone could register that address.
	ErrUnverifiedEmail = errors.New("identity: the user is named by an e-mail the provider did not verify")
)

// Identity is who a request is. The JSON names are short: an Identity is
// sealed into every session cookie.
type Identity struct {
	// Subject is the provider's `sub`.
	Subject string `json:"sub"`
	// User is the value of the configured user claim (default `sub`):
	// X-Forwarded-User and {http.auth.user.id}.
	User string `json:"u,omitempty"`
	// Email is the value of the configured e-mail claim.
	Email string `json:"em,omitempty"`
	// EmailUnverified is true when the provider did not vouch for Email:
	// email_verified was not the boolean true (absent counts too, unless
	// the Mapper assumes it). Such an address is kept but never forwarded
	// (see VerifiedEmail) nor matched by e-mail rules.
	EmailUnverified bool `json:"eu,omitempty"`
	// PreferredUsername is the `preferred_username` claim.
	PreferredUsername string `json:"pu,omitempty"`
	// Name is the `name` claim.
	Name string `json:"n,omitempty"`
	// Groups is the value of the configured groups claim.
	Groups []string `json:"g,omitempty"`
	// Claims holds the further claims the Mapper keeps (its ClaimSet).
	Claims map[string][]string `json:"c,omitempty"`
}

// Defaults of Mapper.
const (
	DefaultUserClaim   = "sub"
	DefaultEmailClaim  = "email"
	DefaultGroupsClaim = "groups"
)

// Mapper builds Identities from claims. Zero fields select the defaults.
type Mapper struct {
	// UserClaim carries the user. Default "sub".
	UserClaim string
	// EmailClaim carries the e-mail. Default "email".
	EmailClaim string
	// GroupsClaim carries the groups. Default "groups".
	GroupsClaim string
	// Keep names further claims to keep in Identity.Claims. Default: none.
	Keep *ClaimSet
	// AssumeEmailVerified treats an e-mail as verified when the claims
	// have no email_verified at all (providers that never send it, such as
	// Entra ID). An explicit false, or anything but true, still counts as
	// unverified. Default: false.
	AssumeEmailVerified bool
}

// VerifiedEmail is the e-mail when the provider vouched for it, else "".
// It is what goes upstream.
func (id *Identity) VerifiedEmail() string {
	if id.EmailUnverified {
		return ""
	}
	return id.Email
}

// Map builds the Identity the claims describe. When the subject or the
// user claim is missing it returns what it found and ErrIncomplete: a
// login refuses such an identity, a bearer token passes without a user.
// When the user claim is the e-mail claim and the e-mail is unverified, it
// returns ErrUnverifiedEmail, and the identity without a user.
func (m *Mapper) Map(claims map[string]any) (Identity, error) {
	return m.MapFrom(func(name string) (any, bool) {
		v, ok := claims[name]
		return v, ok
	})
}

// MapFrom is Map for claims found one by one: get returns the claim named
// (a top-level name) and whether there is one — a verified token's
// Claims.Claim, which decodes only the claims the mapping reads.
func (m *Mapper) MapFrom(get func(name string) (any, bool)) (Identity, error) {
	userClaim, emailClaim := or(m.UserClaim, DefaultUserClaim), or(m.EmailClaim, DefaultEmailClaim)
	verified, stated := get("email_verified")
	id := Identity{
		Subject:           stringOf(get, "sub"),
		User:              stringOf(get, userClaim),
		Email:             stringOf(get, emailClaim),
		EmailUnverified:   verified != true && (stated || !m.AssumeEmailVerified),
		PreferredUsername: stringOf(get, "preferred_username"),
		Name:              stringOf(get, "name"),
		Groups:            stringsOf(get, or(m.GroupsClaim, DefaultGroupsClaim)),
	}
	for _, n := range m.Keep.Names() {
		if v := stringsOf(get, n); v != nil {
			if id.Claims == nil {
				id.Claims = make(map[string][]string)
			}
			id.Claims[n] = v
		}
	}
	if userClaim == emailClaim && id.EmailUnverified && id.User != "" {
		id.User = ""
		return id, ErrUnverifiedEmail
	}
	if id.Subject == "" || id.User == "" {
		return id, ErrIncomplete
	}
	return id, nil
}

// MapperKey stands for what Map's result depends on besides the claims
// (see Mapper.Key). It is comparable.
type MapperKey struct {
	m    *Mapper
	keep *[]string
}

// Key returns what Map's result depends on besides the claims: the
// mapper, and the names its Keep set holds now. A caller may keep Map's
// result for claims that never change (a verified token's) under the key,
// and reuse it while Key returns an equal one; the key must be taken
// before mapping. The mapper's fields must not change once it is in use.
func (m *Mapper) Key() MapperKey {
	return MapperKey{m: m, keep: m.Keep.current()}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// ClaimSet is a set of claim names that several users add to and remove
// from (reference-counted), read without locking on the request path. The
// zero value is empty and ready; a nil *ClaimSet is empty.
type ClaimSet struct {
	mu     sync.Mutex
	counts map[string]int
	names  atomic.Pointer[[]string] // sorted snapshot
}

// Add adds names (once per call: Remove the same names to undo).
func (s *ClaimSet) Add(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	for _, n := range names {
		s.counts[n]++
	}
	s.snapshot()
}

// Remove undoes an Add of the same names.
func (s *ClaimSet) Remove(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if s.counts[n]--; s.counts[n] <= 0 {
			delete(s.counts, n)
		}
	}
	s.snapshot()
}

func (s *ClaimSet) snapshot() {
	out := make([]string, 0, len(s.counts))
	for n := range s.counts {
		out = append(out, n)
	}
	slices.Sort(out)
	s.names.Store(&out)
}

// Names returns the names in the set, sorted. Do not modify the result.
func (s *ClaimSet) Names() []string {
	if p := s.current(); p != nil {
		return *p
	}
	return nil
}

// current returns the latest snapshot of the names: a new one after
// every Add and Remove (nil: none yet, or a nil set).
func (s *ClaimSet) current() *[]string {
	if s == nil {
		return nil
	}
	return s.names.Load()
}

// Lookup finds a claim by name; a dotted name that is not itself a claim
// reaches into nested objects ("realm_access.roles").
func Lookup(claims map[string]any, name string) (any, bool) {
	return lookup(func(name string) (any, bool) {
		v, ok := claims[name]
		return v, ok
	}, name)
}

// lookup is Lookup for claims found by get.
func lookup(get func(string) (any, bool), name string) (any, bool) {
	if v, ok := get(name); ok {
		return v, true
	}
	first, rest, dotted := strings.Cut(name, ".")
	if !dotted {
		return nil, false
	}
	cur, ok := get(first)
	if !ok {
		return nil, false
	}
	for part := range strings.SplitSeq(rest, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// String returns a claim as header-safe text: strings, numbers and
// booleans; anything else is "".
func String(claims map[string]any, name string) string {
	v, _ := Lookup(claims, name)
	return text(v)
}

func stringOf(get func(string) (any, bool), name string) string {
	v, _ := lookup(get, name)
	return text(v)
}

// text is String of a claim's value.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return HeaderSafe(v)
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}

// Strings returns a claim that is a string, number, boolean or an array of
// strings (other elements are skipped), each made header-safe.
func Strings(claims map[string]any, name string) []string {
	v, _ := Lookup(claims, name)
	return texts(v)
}

func stringsOf(get func(string) (any, bool), name string) []string {
	v, _ := lookup(get, name)
	return texts(v)
}

// texts is Strings of a claim's value.
func texts(v any) []string {
	if arr, ok := v.([]any); ok {
		var out []string
		for _, e := range arr {
			if s, ok := e.(string); ok {
				if s = HeaderSafe(s); s != "" {
					out = append(out, s)
				}
			}
		}
		return out
	}
	if s := text(v); s != "" {
		return []string{s}
	}
	return nil
}

// HeaderSafe drops control characters, which are not allowed in header
// values (and could split headers at a careless upstream).
func HeaderSafe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= ' ' && c != 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}
