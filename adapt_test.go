package gatehouse_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/gatehouse-auth/gatehouse"
	_ "github.com/gatehouse-auth/gatehouse/devidp/caddydevidp"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the adapt golden files")

// TestCaddyfileAdapt runs testdata/caddyfile_adapt/*.caddyfiletest: a
// Caddyfile, a line of ten dashes, then either the expected JSON or an
// expected error. An error is looked for first in adapting (syntax) and,
// when adapting succeeds, in caddy.Validate, which provisions the config
// the way `caddy run` would (meaning), without starting servers.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt cases: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			expected = strings.TrimSpace(expected)

			if strings.HasPrefix(expected, "{") {
				if *update {
					out := adaptPretty(t, caddyfile)
					if err := os.WriteFile(file, []byte(caddyfile+"----------\n"+out+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Fatalf("adapted JSON differs (go test -run TestCaddyfileAdapt -update rewrites it)")
				}
				return
			}
			err = adaptAndValidate(caddyfile)
			if err == nil {
				t.Fatalf("config accepted; want an error containing %q", expected)
			}
			if !strings.Contains(err.Error(), expected) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, expected)
			}
		})
	}
}

// TestCaddyfileExample adapts Caddyfile.example, compares it with its
// golden JSON and provisions it, so the demo the README shows runs as is.
func TestCaddyfileExample(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/Caddyfile.example.json"
	got := adaptPretty(t, string(src))
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !caddytest.CompareAdapt(t, golden, string(src), "caddyfile", strings.TrimSpace(string(want))) {
		t.Fatal("Caddyfile.example adapts differently (go test -run TestCaddyfileExample -update rewrites the golden file)")
	}
	if err := adaptAndValidate(string(src)); err != nil {
		t.Fatalf("Caddyfile.example does not provision: %v", err)
	}
}

// TestSecretsFromEnvironment: {env.*} secrets stay placeholders in the
// JSON config and resolve when provisioning; an unset one is an error that
// names the sub-directive and never shows a secret.
func TestSecretsFromEnvironment(t *testing.T) {
	const cf = `http://localhost:9999 {
	gatehouse {
		issuer https://idp.example.com
		client_id app
		client_secret {env.GH_TEST_CLIENT_SECRET}
		cookie_secret {env.GH_TEST_COOKIE_SECRET}
	}
	respond ok
}`
	out := adaptPretty(t, cf)
	if !strings.Contains(out, `"client_secret": "{env.GH_TEST_CLIENT_SECRET}"`) {
		t.Fatalf("placeholder not kept in JSON:\n%s", out)
	}
	t.Setenv("GH_TEST_CLIENT_SECRET", "s3cr3t-client")
	t.Setenv("GH_TEST_COOKIE_SECRET", "")
	err := adaptAndValidate(cf)
	if err == nil || !strings.Contains(err.Error(), "cookie_secret") {
		t.Fatalf("unset cookie secret: %v", err)
	}
	t.Setenv("GH_TEST_COOKIE_SECRET", "short")
	err = adaptAndValidate(cf)
	if err == nil || !strings.Contains(err.Error(), "cookie_secret: secret 1 is 5 bytes") || strings.Contains(err.Error(), "short") {
		t.Fatalf("short cookie secret: %v", err)
	}
	t.Setenv("GH_TEST_COOKIE_SECRET", "a-cookie-secret-of-at-least-32-bytes!")
	if err := adaptAndValidate(cf); err != nil {
		t.Fatalf("valid secrets from the environment: %v", err)
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "cookie")
	os.WriteFile(secretFile, []byte("a-cookie-secret-from-a-file-0123456789\n"), 0o600)
	fromFile := strings.Replace(cf, "{env.GH_TEST_COOKIE_SECRET}", "{file."+secretFile+"}", 1)
	if err := adaptAndValidate(fromFile); err != nil {
		t.Fatalf("cookie secret from a file: %v", err)
	}
	missing := strings.Replace(cf, "{env.GH_TEST_COOKIE_SECRET}", "{file."+filepath.Join(dir, "nope")+"}", 1)
	if err := adaptAndValidate(missing); err == nil || !strings.Contains(err.Error(), "cookie_secret") {
		t.Fatalf("missing secret file: %v", err)
	}
}

func adaptPretty(t *testing.T, caddyfile string) string {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.Message)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return pretty.String()
}

func adaptAndValidate(caddyfile string) error {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return err
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

// TestValidGoldenConfigsProvision provisions the golden configs that need
// no secrets from the environment, so they are valid, not just parseable.
func TestValidGoldenConfigsProvision(t *testing.T) {
	for _, name := range []string{"bearer_api_only", "ordered_after_forward_auth"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/caddyfile_adapt/" + name + ".caddyfiletest")
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, _, _ := strings.Cut(string(data), "----------")
			t.Setenv("APP_CLIENT_SECRET", "client-secret")
			if err := adaptAndValidate(caddyfile); err != nil {
				t.Fatalf("does not provision: %v", err)
			}
		})
	}
}
