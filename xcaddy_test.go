package gatehouse_test

import (
	"os"
	"regexp"
	"testing"
)

// TestXcaddyRecipeMatchesGoMod keeps xcaddy.toml's Caddy version equal to
// the one gatehouse is built and tested against.
func TestXcaddyRecipeMatchesGoMod(t *testing.T) {
	recipe, err := os.ReadFile("xcaddy.toml")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`github\.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(mod)
	got := regexp.MustCompile(`(?m)^caddy_version = "(v[^"]+)"`).FindSubmatch(recipe)
	if want == nil || got == nil {
		t.Fatalf("cannot find the Caddy version in go.mod (%v) or xcaddy.toml (%v)", want != nil, got != nil)
	}
	if string(got[1]) != string(want[1]) {
		t.Fatalf("xcaddy.toml says Caddy %s, go.mod %s", got[1], want[1])
	}
	if !regexp.MustCompile(`xcaddy build ` + regexp.QuoteMeta(string(want[1])) + ` --with github.com/gatehouse-auth/gatehouse`).Match(recipe) {
		t.Fatal("xcaddy.toml's command does not name the same version")
	}
}
