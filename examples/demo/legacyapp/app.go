// Package legacyapp is the demo's "legacy application": it knows nothing of OpenID Connect
// and shows the identity headers the proxy in front of it sends.
package legacyapp

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
)

var page = template.Must(template.New("app").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Legacy app</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.v{font-family:ui-monospace,monospace;word-break:break-all}
.banner{background:#fff4d6;border:1px solid #e0b000;padding:.75rem 1rem;border-radius:6px;margin:1rem 0}
form{display:inline}button,a.button{font:inherit;padding:.4rem .9rem;border-radius:6px;border:1px solid #2456d6;background:#2456d6;color:#fff;text-decoration:none;cursor:pointer}
</style></head>
<body>
<h1>Legacy app</h1>
<p id="whoami">Signed in as <strong id="user">{{.Email}}</strong>{{if .User}} (<code>{{.User}}</code>){{end}}.</p>
{{if .Impersonated}}<div class="banner" id="impersonation-banner">You are <strong>impersonating</strong> this user, as <strong id="impersonator">{{or .ImpersonatorEmail .ImpersonatorEmailUnverified .Impersonator}}</strong>{{if .ImpersonatorEmailUnverified}} <span id="impersonator-unverified">(email not verified)</span>{{end}} (<code>{{.Impersonator}}</code>).
<form method="post" action="/oauth2/impersonation/end"><button type="submit" id="end-impersonation">End impersonation</button></form></div>{{end}}
<p><a class="button" id="logout" href="/oauth2/logout">Sign out</a> <a href="/oauth2/userinfo">/oauth2/userinfo</a></p>
<h2>Headers this app received</h2>
<table id="headers">
{{range .Headers}}<tr><th>{{.Name}}</th><td class="v" data-header="{{.Name}}">{{.Value}}</td></tr>
{{end}}</table>
</body></html>
`))

type header struct{ Name, Value string }

// Handler serves the app: every path shows the page; /api/whoami answers JSON.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"user":         r.Header.Get("X-Forwarded-User"),
			"impersonator": r.Header.Get("X-Forwarded-Impersonator"),
		})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var hs []header
		for name, vals := range r.Header {
			if strings.HasPrefix(name, "X-Forwarded-") || name == "Authorization" {
				hs = append(hs, header{name, strings.Join(vals, ", ")})
			}
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, map[string]any{
			"User":                        r.Header.Get("X-Forwarded-User"),
			"Email":                       r.Header.Get("X-Forwarded-Email"),
			"Impersonated":                r.Header.Get("X-Forwarded-Impersonated") == "true",
			"Impersonator":                r.Header.Get("X-Forwarded-Impersonator"),
			"ImpersonatorEmail":           r.Header.Get("X-Forwarded-Impersonator-Email"),
			"ImpersonatorEmailUnverified": r.Header.Get("X-Forwarded-Impersonator-Email-Unverified"),
			"Headers":                     hs,
		})
	})
	return mux
}
