package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// referenceClaims is the decoding parseClaims replaced, kept as its
// oracle: the whole payload into a map (json.Decoder, UseNumber), the
// registered claims read from the map. One difference is intended: the
// old check for trailing data (Decoder.More) let a payload followed by a
// stray `}` or `]` through; parseClaims refuses any trailing data, so the
// oracle does too (json.Valid).
func referenceClaims(payload []byte) (*Claims, map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var all map[string]any
	if err := dec.Decode(&all); err != nil || all == nil || dec.More() || !json.Valid(payload) {
		return nil, nil, false
	}
	c := &Claims{}
	ok := refString(all, "iss", &c.Issuer) &&
		refString(all, "sub", &c.Subject) &&
		refStrings(all, "aud", func(s string) []string { return []string{s} }, &c.Audience) &&
		refTime(all, "exp", &c.Expiry) &&
		refTime(all, "nbf", &c.NotBefore) &&
		refTime(all, "iat", &c.IssuedAt) &&
		refString(all, "nonce", &c.Nonce) &&
		refString(all, "azp", &c.AuthorizedParty) &&
		refString(all, "at_hash", &c.AccessTokenHash) &&
		refString(all, "sid", &c.SessionID) &&
		refScopes(all, &c.Scopes)
	return c, all, ok
}

func refScopes(all map[string]any, dst *[]string) bool {
	if v, ok := all["scope"]; ok {
		s, ok := v.(string)
		*dst = strings.Fields(s)
		return ok
	}
	return refStrings(all, "scp", strings.Fields, dst)
}

func refString(all map[string]any, name string, dst *string) bool {
	v, present := all[name]
	if !present {
		return true
	}
	s, ok := v.(string)
	*dst = s
	return ok
}

func refStrings(all map[string]any, name string, one func(string) []string, dst *[]string) bool {
	switch v := all[name].(type) {
	case nil:
		_, present := all[name]
		return !present
	case string:
		*dst = one(v)
		return true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return false
			}
			out = append(out, s)
		}
		*dst = out
		return true
	default:
		return false
	}
}

func refTime(all map[string]any, name string, dst *time.Time) bool {
	v, present := all[name]
	if !present {
		return true
	}
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f >= 253402300800 {
		return false
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return true
}

// registered is the registered claims of c, comparable with DeepEqual.
func registered(c *Claims) []any {
	return []any{c.Issuer, c.Subject, c.Audience, c.Expiry, c.NotBefore, c.IssuedAt,
		c.Nonce, c.AuthorizedParty, c.AccessTokenHash, c.SessionID, c.Scopes}
}

// checkAgainstReference parses payload both ways and fails t on any
// difference: acceptance, registered claims, Map, and Claim of every
// name (on claims whose Map was never built, and on claims whose was).
func checkAgainstReference(t *testing.T, payload []byte) {
	t.Helper()
	enc := b64.EncodeToString(payload)
	c, err := parseClaims(enc)
	want, all, ok := referenceClaims(payload)
	if ok != (err == nil) {
		t.Fatalf("payload %q: parseClaims err %v, reference ok %v", payload, err, ok)
	}
	if !ok {
		if err != ErrMalformed || c != nil {
			t.Fatalf("payload %q: %v, %v", payload, c, err)
		}
		return
	}
	if got, want := registered(c), registered(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("payload %q: registered claims\n got %#v\nwant %#v", payload, got, want)
	}
	for name, v := range all {
		if got, ok := c.Claim(name); !ok || !reflect.DeepEqual(got, v) {
			t.Fatalf("payload %q: Claim(%q) = %#v, %v; want %#v", payload, name, got, ok, v)
		}
	}
	for _, name := range []string{"", "absent", "iss ", "ISS", "a.b"} {
		if _, in := all[name]; !in {
			if v, ok := c.Claim(name); ok {
				t.Fatalf("payload %q: Claim(%q) = %#v for an absent claim", payload, name, v)
			}
		}
	}
	if got := c.Map(); !reflect.DeepEqual(got, all) {
		t.Fatalf("payload %q: Map\n got %#v\nwant %#v", payload, got, all)
	}
	for name, v := range all {
		if got, ok := c.Claim(name); !ok || !reflect.DeepEqual(got, v) {
			t.Fatalf("payload %q: Claim(%q) after Map = %#v, %v", payload, name, got, ok)
		}
	}
}

// claimsPayloads are payloads for the comparison with the reference: the
// registered claims in every type, names given twice, escapes, invalid
// UTF-8, nesting, numbers, whitespace, trailing data.
var claimsPayloads = []string{
	`{"iss":"https://idp.example.com","sub":"alice","aud":"api","exp":1795718582,"iat":1795714982}`,
	`{"iss":"https://idp.example.com","sub":"alice","aud":["api","other"],"exp":1795718582.25,"nbf":0,"iat":1e9,` +
		`"jti":"3f1c2a9e","scope":"openid  email","groups":["admins","staff"],"email_verified":true,"typ":"Bearer",` +
		`"realm_access":{"roles":["offline_access"]},"resource_access":{"account":{"roles":["manage-account"]}},"n":null}`,
	`{}`, ` { } `, "\t{\"sub\" :\n\"x\" , \"aud\" : [ ] }\r\n", `{"aud":[]}`, `{"aud":[1]}`, `{"aud":["a",null]}`,
	`{"aud":null}`, `{"aud":{}}`, `{"aud":true}`, `{"sub":null}`, `{"sub":1}`, `{"sub":"x","sub":1}`,
	`{"sub":1,"sub":"x"}`, `{"exp":"1"}`, `{"exp":-1}`, `{"exp":-0}`, `{"exp":0.5e1}`, `{"exp":1E400}`,
	`{"exp":253402300799.9}`, `{"exp":253402300800}`, `{"exp":null}`, `{"exp":[1]}`, `{"scope":"a b","scp":1}`,
	`{"scope":["a"]}`, `{"scope":null}`, `{"scp":"a b"}`, `{"scp":["a b","c"]}`, `{"scp":[]}`, `{"scp":[1]}`,
	`{"i\u0073s":"escaped name","iss":"plain"}`, `{"iss":"plain","i\u0073s":"escaped name"}`,
	`{"sub":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"}`, `{"sub":"\ud800"}`, "{\"sub\":\"caf\xc3\xa9\"}",
	"{\"sub\":\"bad \xff utf-8\"}", "{\"s\xffb\":\"bad key\"}", "{\"\xc3\xa9\":1}", `{"":""}`,
	`{"a":{"b":{"c":[1,2.5,-3e-2,{"d":null}],"c":"again"}},"a.b":"dotted"}`, `{"x":[[],{},[{}],""]}`,
	`{"iss":"x"}}`, `{"iss":"x"}]`, `{"iss":"x"} x`, `{"iss":"x"}{}`, `{"iss":"x"`, `null`, `[]`, `"x"`, `1`,
	``, ` `, `{"iss":"x",}`, `{'iss':'x'}`, `{"nonce":"n","azp":"c","at_hash":"h","sid":"s"}`, `{"nonce":7}`,
	`{"events":{"http://schemas.openid.net/event/backchannel-logout":{}}}`,
}

func TestParseClaimsMatchesReference(t *testing.T) {
	for _, p := range claimsPayloads {
		checkAgainstReference(t, []byte(p))
	}
}

// TestParseClaimsRefusesTrailingData: nothing may follow the object, not
// even a closing bracket (which the earlier decoding let through).
func TestParseClaimsRefusesTrailingData(t *testing.T) {
	for _, p := range []string{`{"iss":"x"}}`, `{"iss":"x"}]`, `{"iss":"x"} ]]`, `{"iss":"x"},`, `{"iss":"x"}{}`} {
		if _, err := parseClaims(b64.EncodeToString([]byte(p))); err != ErrMalformed {
			t.Errorf("%s: err %v", p, err)
		}
	}
	if _, err := parseClaims(b64.EncodeToString([]byte(" {\"iss\":\"x\"}\n "))); err != nil {
		t.Errorf("surrounding whitespace: %v", err)
	}
}

// FuzzParseClaims: parseClaims, Map and Claim agree with the reference
// decoding on any payload.
func FuzzParseClaims(f *testing.F) {
	for _, p := range claimsPayloads {
		f.Add([]byte(p))
	}
	f.Fuzz(checkAgainstReference)
}

func TestClaimDecodesOneClaim(t *testing.T) {
	c, err := parseClaims(b64.EncodeToString([]byte(`{"sub":"a","groups":["x","y"],"n":1.5,"o":{"k":[true]},"sub":"b"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Claim("sub"); !ok || v != "b" {
		t.Fatalf("sub %#v", v)
	}
	if v, _ := c.Claim("n"); v != json.Number("1.5") {
		t.Fatalf("n %#v", v)
	}
	if v, _ := c.Claim("o"); !reflect.DeepEqual(v, map[string]any{"k": []any{true}}) {
		t.Fatalf("o %#v", v)
	}
	if c.all.Load() != nil {
		t.Fatal("Claim decoded the whole map")
	}
}

func TestDerived(t *testing.T) {
	c, err := parseClaims(b64.EncodeToString([]byte(`{"sub":"a"}`)))
	if err != nil {
		t.Fatal(err)
	}
	builds := map[string]int{}
	derive := func(key string) string {
		return Derived(c, key, func(c *Claims) string {
			builds[key]++
			return key + ":" + c.Subject
		})
	}
	for range 3 {
		if v := derive("k1"); v != "k1:a" {
			t.Fatalf("k1: %q", v)
		}
	}
	if builds["k1"] != 1 {
		t.Fatalf("k1 built %d times", builds["k1"])
	}
	// Another key of the same type, and one of another type, build their own.
	if v := derive("k2"); v != "k2:a" || builds["k2"] != 1 {
		t.Fatalf("k2: %q, %d builds", v, builds["k2"])
	}
	type other struct{ s string }
	if v := Derived(c, other{"k1"}, func(*Claims) int { return 7 }); v != 7 {
		t.Fatalf("other key type: %d", v)
	}
	if v := derive("k1"); v != "k1:a" || builds["k1"] != 1 {
		t.Fatalf("k1 rebuilt: %d builds", builds["k1"])
	}
	// A nil interface value is kept as such.
	var calls int
	for range 2 {
		if err := Derived(c, "nil", func(*Claims) error { calls++; return nil }); err != nil || calls != 1 {
			t.Fatalf("nil error: %v, %d calls", err, calls)
		}
	}
	// Only the latest few keys are kept: the oldest is built again.
	for i := range maxDerived {
		derive(fmt.Sprint("fill", i))
	}
	if derive("k1"); builds["k1"] != 2 {
		t.Fatalf("k1 built %d times after eviction", builds["k1"])
	}
	if n := len(*c.derived.Load()); n > maxDerived {
		t.Fatalf("%d values kept", n)
	}
}

// TestDerivedConcurrent: concurrent callers all get a value built for
// their key (run with -race).
func TestDerivedConcurrent(t *testing.T) {
	c, err := parseClaims(b64.EncodeToString([]byte(`{"sub":"a"}`)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			key := i % 3
			for range 100 {
				if v := Derived(c, key, func(*Claims) *int { return &key }); *v != key {
					t.Errorf("key %d got %d", key, *v)
					return
				}
				_ = c.Map()
			}
		})
	}
	wg.Wait()
}
