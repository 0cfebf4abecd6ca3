package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestAuditEvents runs a real Caddy and walks every audit event (logins,
// a forged callback, an allow-rule refusal, sign-out, a back-channel
// logout and its replay, the revoked session's next request, a refused
// bearer token). Each event line carries its stable fields, the provider
// and a request ID that Caddy's access log line of the same request also
// carries; no line gatehouse wrote holds a token, code, cookie or secret.
func TestAuditEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	idp := newIDP(t)
	site := freeSite(t)
	dir := t.TempDir()
	logFile, accessFile := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "access.log")
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		output file %[1]s
		format json
		level DEBUG
	}
}
%[2]s {
	bind 127.0.0.1
	log {
		output file %[3]s
		format json
	}
	gatehouse {
		issuer %[4]s
		client_id %[5]s
		client_secret %[6]s
		cookie_secret %[7]s
		cookie_insecure
		allow_groups admins
		bearer {
			audience %[8]s
		}
	}
	respond "user={http.auth.user.id}"
}
`, logFile, site, accessFile, idp.Issuer(), testClientID, testClientSecret, testCookieSecret, apiAudience)
	runCaddy(t, cf)

	var secrets []string // what no line of gatehouse's may contain
	login := func(user string) *browser {
		t.Helper()
		b := newBrowser(t)
		resp, _ := b.get(site + "/reports?q=a%20b")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("first visit: %d", resp.StatusCode)
		}
		callback := b.loginAt(resp.Header.Get("Location"), user)
		cu, _ := url.Parse(callback)
		secrets = append(secrets, cu.Query().Get("code"))
		if resp, _ = b.get(callback); resp.StatusCode != http.StatusFound {
			t.Fatalf("callback: %d", resp.StatusCode)
		}
		u, _ := url.Parse(site)
		for _, c := range b.client.Jar.Cookies(u) {
			secrets = append(secrets, c.Value)
		}
		return b
	}
	status := func(b *browser, method, target string, headers ...string) int {
		t.Helper()
		r, _ := http.NewRequest(method, target, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		resp := b.do(r)
		readBody(resp)
		return resp.StatusCode
	}

	alice := login("alice")
	if got := status(alice, "GET", site+"/reports"); got != http.StatusOK {
		t.Fatalf("alice: %d", got)
	}
	bob := login("bob") // staff only: refused by allow_groups
	if got := status(bob, "GET", site+"/reports", "Accept", "application/json"); got != http.StatusForbidden {
		t.Fatalf("bob: %d", got)
	}
	// A forged callback: no login in progress has this state.
	if got := status(newBrowser(t), "GET", site+"/oauth2/callback?state=forged&code=stolen-code"); got != http.StatusBadRequest {
		t.Fatalf("forged callback: %d", got)
	}
	secrets = append(secrets, "stolen-code")
	if got := status(alice, "POST", site+"/oauth2/sign_out", "Sec-Fetch-Site", "same-origin"); got != http.StatusFound && got != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", got)
	}
	logoutToken, err := idp.MintLogoutToken(testClientID, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, logoutToken)
	for range 2 { // the second is a replay
		resp, err := http.PostForm(site+"/oauth2/backchannel_logout", url.Values{"logout_token": {logoutToken}})
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
	}
	if got := status(bob, "GET", site+"/reports", "Accept", "application/json"); got != http.StatusUnauthorized {
		t.Fatalf("bob after the back-channel logout: %d", got)
	}
	junk := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 3) + ".eyJzdWIiOiJldmUifQ.c2ln"
	secrets = append(secrets, junk)
	if got := status(newBrowser(t), "GET", site+"/api", "Authorization", "Bearer "+junk); got != http.StatusUnauthorized {
		t.Fatalf("junk bearer token: %d", got)
	}
	if err := caddy.Stop(); err != nil { // flushes the logs
		t.Fatal(err)
	}

	uuids := map[string]bool{} // request IDs in the access log
	for _, line := range jsonLines(t, accessFile) {
		if id, _ := line["uuid"].(string); id != "" {
			uuids[id] = true
		}
	}
	var events []map[string]any
	for _, line := range jsonLines(t, logFile) {
		logger, _ := line["logger"].(string)
		if !strings.HasPrefix(logger, "http.handlers.gatehouse") {
			continue
		}
		raw, _ := json.Marshal(line)
		for _, s := range append(secrets, testClientSecret, testCookieSecret, "eyJ") {
			if s != "" && strings.Contains(string(raw), s) {
				t.Errorf("a log line holds a secret (%.12s…): %s", s, raw)
			}
		}
		if logger != "http.handlers.gatehouse.audit" {
			continue
		}
		events = append(events, line)
		id, _ := line["request_id"].(string)
		switch {
		case line["provider"] != idp.Issuer():
			t.Errorf("event without the provider: %s", raw)
		case !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(id):
			t.Errorf("event without a request ID: %s", raw)
		case !uuids[id]:
			t.Errorf("the access log has no request %s: %s", id, raw)
		}
	}

	// want: event, then field values the event must carry.
	want := [][]string{
		{"login", "sub", "alice", "user", "alice", "email", "alice@example.com"},
		{"login", "sub", "bob"},
		{"refused", "reason", "allow_rules", "sub", "bob"},
		{"login_failed", "reason", "state_mismatch"},
		{"logout", "kind", "sign_out", "sub", "alice"},
		{"logout", "kind", "backchannel", "sub", "bob"},
		{"logout_refused", "reason", "replayed"},
		{"session_ended", "reason", "revoked"},
		{"bearer_refused", "reason", "invalid"},
	}
	next := 0
	for _, e := range events {
		if next < len(want) && matchesEvent(e, want[next]) {
			next++
		}
	}
	if next < len(want) {
		var got []string
		for _, e := range events {
			raw, _ := json.Marshal(e)
			got = append(got, string(raw))
		}
		t.Fatalf("event %v not logged (in this order); the events:\n%s", want[next], strings.Join(got, "\n"))
	}
	// One session is followed from login to sign-out.
	var loginRef, signOutRef any
	for _, e := range events {
		switch {
		case matchesEvent(e, want[0]):
			loginRef = e["session"]
		case matchesEvent(e, want[4]):
			signOutRef = e["session"]
		}
	}
	if loginRef == nil || loginRef != signOutRef {
		t.Errorf("login's session %v, sign-out's %v: want the same reference", loginRef, signOutRef)
	}
}

func matchesEvent(e map[string]any, want []string) bool {
	if e["event"] != want[0] {
		return false
	}
	for i := 1; i+1 < len(want); i += 2 {
		if e[want[i]] != want[i+1] {
			return false
		}
	}
	return true
}

// jsonLines reads a file of JSON log lines.
func jsonLines(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v: %s", name, err, sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}
