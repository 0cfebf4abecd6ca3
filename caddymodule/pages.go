package caddymodule

import (
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// problem is a failure shown to a person (HTML) or a program (JSON).
type problem struct {
	status  int
	code    string // machine-readable, for the JSON body
	title   string
	message string
	signOut string // when set, the page offers a sign-out button posting here
}

// fail answers r with p. When the server has handle_errors routes, it
// returns a caddyhttp.Error so they can render it (headers such as
// WWW-Authenticate stay set); otherwise it writes a small page itself — an
// HTML page for browser navigations, a JSON body for everything else — so
// nobody gets an empty error response. Nothing from the request is echoed.
func fail(w http.ResponseWriter, r *http.Request, p problem, cause error) error {
	w.Header().Set("Cache-Control", "no-store")
	// Our pages may sit at /oauth2/callback?code=…&state=…: a link on them
	// must not carry that URL away (RFC 9700 §4.2.4), and no site may frame
	// them (the sign-out button, review SA2-20).
	w.Header().Set("Referrer-Policy", "no-referrer")
	if hasErrorRoutes(r) {
		return caddyhttp.Error(p.status, cause)
	}
	if isNavigation(r) {
		htmlHeaders(w.Header(), "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		w.WriteHeader(p.status)
		_, _ = w.Write([]byte(htmlPage(p)))
		return nil
	}
	writeProblemJSON(w, p.status, p.code, p.message)
	return nil
}

// redirect answers 302 Found to location — an absolute URL, or a path
// the return-to validator passed — with no body: http.Redirect would
// parse the URL again and write an HTML body no browser shows.
func redirect(w http.ResponseWriter, location string) {
	w.Header()["Location"] = []string{location}
	w.WriteHeader(http.StatusFound)
}

// writeProblemJSON answers {"error": code, "message": message}.
func writeProblemJSON(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
}

// writeJSON answers body as JSON — json, not strconv.Quote: an e-mail's
// odd runes stay valid JSON (SA2-33).
func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func htmlPage(p problem) string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`)
	b.WriteString(`<title>` + html.EscapeString(p.title) + `</title>`)
	b.WriteString(`<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}small{color:#666}</style></head><body>`)
	b.WriteString(`<h1>` + html.EscapeString(p.title) + `</h1>`)
	b.WriteString(`<p>` + html.EscapeString(p.message) + `</p>`)
	if p.signOut != "" {
		b.WriteString(`<form method="post" action="` + html.EscapeString(p.signOut) + `"><button type="submit">Sign out</button></form>`)
	}
	b.WriteString(`<p><a href="/">Go to the start page</a></p>`)
	b.WriteString(`<p><small>` + strconv.Itoa(p.status) + ` ` + html.EscapeString(http.StatusText(p.status)) + `</small></p>`)
	b.WriteString(`</body></html>` + "\n")
	return b.String()
}

// hasErrorRoutes reports whether the server handling r has handle_errors routes.
func hasErrorRoutes(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// isNavigation reports whether r is a browser loading a page, as opposed
// to a script or program: GET or HEAD, not XHR, and either marked as a
// navigation by Sec-Fetch-Mode or (older browsers) accepting HTML.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// htmlHeaders are the headers of every page gatehouse writes itself: HTML
// with csp, never sniffed as anything else, never sending a Referer (our
// pages may sit at /oauth2/callback?code=…&state=…).
func htmlHeaders(h http.Header, csp string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// writeContinuePage answers a login that ends with a same-site page hop
// to target (cookie_samesite strict, see serveCallback).
func writeContinuePage(w http.ResponseWriter, target string) {
	htmlHeaders(w.Header(), "default-src 'none'; frame-ancestors 'none'")
	t := html.EscapeString(target)
	_, _ = w.Write([]byte(`<!doctype html><meta http-equiv="refresh" content="0;url=` + t +
		`"><title>Signed in</title><p>Signed in. <a href="` + t + `">Continue</a></p>`))
}

// serveNoLogins answers the login endpoints in bearer { only } mode: the
// request is gatehouse's to answer, not the upstream's, but this site
// signs no one in.
func serveNoLogins(w http.ResponseWriter, r *http.Request) error {
	return fail(w, r, problem{
		status: http.StatusNotFound, code: "not_found", title: "Not found",
		message: "This site accepts bearer tokens only: it does not sign users in.",
	}, errors.New("gatehouse: no logins in bearer only mode"))
}

// writeSignOutPage asks the user to confirm a sign-out another site asked
// for: a button posting to action, with rd.
func writeSignOutPage(w http.ResponseWriter, action, rd string) {
	htmlHeaders(w.Header(), "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out?</title></head><body>` +
		`<h1>Sign out?</h1><form method="post" action="` + html.EscapeString(action) + `">` +
		`<input type="hidden" name="rd" value="` + html.EscapeString(rd) + `"><button type="submit">Sign out</button></form></body></html>` + "\n"))
}
