package identity

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func claims(t *testing.T, js string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(js))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMap(t *testing.T) {
	keep := &ClaimSet{}
	keep.Add("department", "realm_access.roles")
	m := &Mapper{UserClaim: "preferred_username", GroupsClaim: "realm_access.roles", Keep: keep}
	got, err := m.Map(claims(t, `{"sub":"u1","preferred_username":"alice","email":"a@example.com",
		"email_verified":false,"name":"Alice\r\nX-Evil: 1","realm_access":{"roles":["admin",7,"staff"]},
		"department":42,"other":"dropped"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{
		Subject: "u1", User: "alice", Email: "a@example.com", EmailUnverified: true,
		PreferredUsername: "alice", Name: "AliceX-Evil: 1", Groups: []string{"admin", "staff"},
		Claims: map[string][]string{"department": {"42"}, "realm_access.roles": {"admin", "staff"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestMapDefaults(t *testing.T) {
	got, err := (&Mapper{}).Map(claims(t, `{"sub":"u1","email":"a@example.com","email_verified":true,"groups":"one"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "u1" || got.VerifiedEmail() != "a@example.com" || got.EmailUnverified || !reflect.DeepEqual(got.Groups, []string{"one"}) || got.Claims != nil {
		t.Fatalf("got %+v", got)
	}
}

// TestUnverifiedEmail (issue 10, defect 6; review SA2-04): only
// email_verified: true (the boolean) vouches for an e-mail; false, the
// string "false" (it used to count as verified), anything else, or no
// claim at all (unless the mapper assumes it) keep the address from the
// upstream, and a user named by such an address is refused.
func TestUnverifiedEmail(t *testing.T) {
	for _, tc := range []struct {
		verified string // JSON, "" for absent
		assume   bool
		ok       bool
	}{
		{`true`, false, true},
		{`false`, false, false},
		{`"false"`, false, false},
		{`"true"`, false, false},
		{`1`, false, false},
		{`null`, false, false},
		{``, false, false},
		{``, true, true},
		{`false`, true, false},
	} {
		js := `{"sub":"u1","email":"ceo@corp.example"`
		if tc.verified != "" {
			js += `,"email_verified":` + tc.verified
		}
		js += `}`
		m := &Mapper{AssumeEmailVerified: tc.assume}
		id, err := m.Map(claims(t, js))
		if err != nil || (id.VerifiedEmail() != "") != tc.ok || id.EmailUnverified == tc.ok || id.Email != "ceo@corp.example" {
			t.Errorf("%s (assume %v): verified email %q, unverified %v, err %v", js, tc.assume, id.VerifiedEmail(), id.EmailUnverified, err)
		}
		m.UserClaim = "email"
		id, err = m.Map(claims(t, js))
		if tc.ok != (err == nil) || !tc.ok && (!errors.Is(err, ErrUnverifiedEmail) || id.User != "") {
			t.Errorf("%s (assume %v) as the user claim: user %q, err %v", js, tc.assume, id.User, err)
		}
	}
}

func TestMapIncomplete(t *testing.T) {
	for _, js := range []string{`{}`, `{"sub":"u1"}`, `{"upn":"x"}`, `{"sub":{"x":1},"upn":"x"}`} {
		id, err := (&Mapper{UserClaim: "upn"}).Map(claims(t, js))
		if !errors.Is(err, ErrIncomplete) {
			t.Errorf("%s: err = %v, want ErrIncomplete (id %+v)", js, err, id)
		}
	}
	// What was found is still returned (a bearer token may pass without a user).
	id, _ := (&Mapper{UserClaim: "upn"}).Map(claims(t, `{"sub":"u1","email":"e@x.example"}`))
	if id.Subject != "u1" || id.Email != "e@x.example" {
		t.Fatalf("got %+v", id)
	}
}

func TestClaimSet(t *testing.T) {
	var nilSet *ClaimSet
	if nilSet.Names() != nil {
		t.Fatal("nil set has names")
	}
	var s ClaimSet
	s.Add("b", "a")
	s.Add("a")
	if got := s.Names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("names %v", got)
	}
	s.Remove("b", "a")
	if got := s.Names(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("after one remove: %v", got)
	}
	s.Remove("a")
	if got := s.Names(); len(got) != 0 {
		t.Fatalf("after both removes: %v", got)
	}
}

// TestMapFrom: claims found one by one map as the map of them does,
// dotted names included.
func TestMapFrom(t *testing.T) {
	c := claims(t, `{"sub":"u1","email":"e@x.example","email_verified":true,"realm_access":{"roles":["r1","r2"]},"n":2}`)
	keep := &ClaimSet{}
	keep.Add("n", "realm_access.roles")
	m := &Mapper{GroupsClaim: "realm_access.roles", Keep: keep}
	want, wantErr := m.Map(c)
	var asked []string
	got, err := m.MapFrom(func(name string) (any, bool) {
		asked = append(asked, name)
		v, ok := c[name]
		return v, ok
	})
	if !reflect.DeepEqual(got, want) || err != wantErr {
		t.Fatalf("MapFrom %+v, %v; Map %+v, %v", got, err, want, wantErr)
	}
	if !reflect.DeepEqual(got.Groups, []string{"r1", "r2"}) || got.Claims["n"][0] != "2" {
		t.Fatalf("got %+v", got)
	}
	if slices.Contains(asked, "") {
		t.Fatalf("asked for %q", asked)
	}
}

// TestMapperKey: the key changes when the kept claims do, and only then.
func TestMapperKey(t *testing.T) {
	keep := &ClaimSet{}
	m, other := &Mapper{Keep: keep}, &Mapper{Keep: keep}
	k := m.Key()
	if m.Key() != k || other.Key() == k {
		t.Fatal("key not stable, or shared by two mappers")
	}
	keep.Add("x")
	if m.Key() == k {
		t.Fatal("key unchanged after Add")
	}
	k = m.Key()
	keep.Remove("x")
	if m.Key() == k {
		t.Fatal("key unchanged after Remove")
	}
	if (&Mapper{}).Key() == (&Mapper{}).Key() {
		t.Fatal("distinct mappers share a key")
	}
}

func TestStrings(t *testing.T) {
	c := claims(t, `{"s":"x","n":1.5,"b":true,"f":false,"a":["p","",null,"q\u0000"],"o":{"k":"v"},"dotted.name":"direct"}`)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"s", []string{"x"}}, {"n", []string{"1.5"}}, {"b", []string{"true"}}, {"f", []string{"false"}},
		{"a", []string{"p", "q"}}, {"o", nil}, {"o.k", []string{"v"}}, {"dotted.name", []string{"direct"}},
		{"missing", nil}, {"s.x", nil},
	} {
		if got := Strings(c, tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Strings(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzMap(f *testing.F) {
	f.Add(`{"sub":"a","groups":["x"],"e":{"f":[1,"g"]}}`, "e.f")
	f.Fuzz(func(t *testing.T, js, claim string) {
		var m map[string]any
		if json.Unmarshal([]byte(js), &m) != nil {
			return
		}
		keep := &ClaimSet{}
		keep.Add(claim)
		id, _ := (&Mapper{UserClaim: claim, GroupsClaim: claim, Keep: keep}).Map(m)
		for _, v := range append(append([]string{id.User, id.Email, id.Name}, id.Groups...), id.Claims[claim]...) {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("header-unsafe value %q", v)
			}
		}
	})
}
