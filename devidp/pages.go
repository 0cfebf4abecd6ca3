package devidp

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"
)

// Banner is the notice every HTML page devidp renders carries.
const Banner = "devidp — development identity provider, not for production"

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"join":   strings.Join,
	"banner": func() string { return Banner },
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · devidp</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f6;color:#222}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold;text-align:center}
main{max-width:36em;margin:2em auto;padding:0 1em}
ul.users{list-style:none;padding:0}
ul.users li{margin:.5em 0}
button{font:inherit;padding:.6em 1em;cursor:pointer}
ul.users button{width:100%;text-align:left;background:#fff;border:1px solid #bbb;border-radius:4px}
ul.users button:hover,ul.users button:focus{border-color:#0057b7}
.detail{display:block;color:#555;font-size:.9em}
.error{color:#b00020}
</style>
</head>
<body>
<div class="banner" role="alert">{{banner}}</div>
<main>
{{end}}

{{define "foot"}}</main>
</body>
</html>
{{end}}

{{define "login"}}{{template "head" .}}<h1>Sign in to {{.ClientID}}</h1>
<p>This is a development identity provider: pick a user, no password needed.</p>
{{with .Error}}<p class="error">{{.}}</p>
{{end}}<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<ul class="users">
{{range .Users}}<li><button type="submit" name="user" value="{{.Subject}}"{{if .Hinted}} autofocus{{end}}><strong>{{.Subject}}</strong>{{with .Name}} ({{.}}){{end}}{{with .Email}}<span class="detail">{{.}}</span>{{end}}{{with .Groups}}<span class="detail">groups: {{join . ", "}}</span>{{end}}</button></li>
{{end}}</ul>
<button type="submit" name="action" value="cancel">Cancel</button>
</form>
{{template "foot"}}{{end}}

{{define "error"}}{{template "head" .}}<h1>{{.Title}}</h1>
<p class="error">{{.Message}}</p>
<p>devidp did not redirect back to the application, because the request could not be trusted.</p>
{{template "foot"}}{{end}}

{{define "signedout"}}{{template "head" .}}<h1>You are signed out of devidp</h1>
{{with .Message}}<p>{{.}}</p>
{{end}}{{template "foot"}}{{end}}
`))

type hiddenField struct{ Name, Value string }

type loginUser struct {
	Subject, Name, Email string
	Groups               []string
	Hinted               bool
}

type loginPage struct {
	Title    string
	ClientID string
	Action   string
	Error    string
	Hidden   []hiddenField
	Users    []loginUser
}

type messagePage struct {
	Title   string
	Message string
}

// renderHTML executes the named template into a buffer and writes it with
// headers suited to pages that must not be cached or framed.
func renderHTML(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "devidp: rendering page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError renders the error page; it never redirects.
func renderError(w http.ResponseWriter, status int, title, msg string) {
	renderHTML(w, status, "error", messagePage{Title: title, Message: msg})
}
