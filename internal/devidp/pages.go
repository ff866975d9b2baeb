package devidp

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are the provider's HTML pages, each the layout around one content template.
var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range []string{"login", "error", "formpost", "signedout", "admin", "link", "kcdone"} {
		m[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// view is what the layout sees: the page's title and its own data.
type view struct {
	Title string
	Data  any
}

// render answers an HTML page. Pages may not be framed or cached: they carry one-time
// links, CSRF tokens and codes.
func (s *Server) render(w http.ResponseWriter, status int, page, title string, data any) {
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", view{title, data}); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	buf.WriteTo(w)
}

// errorPage shows message, which is the provider's own sentence, never a dependency's error.
func (s *Server) errorPage(w http.ResponseWriter, status int, title, message string) {
	s.render(w, status, "error", title, struct{ Message string }{message})
}
