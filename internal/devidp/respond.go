package devidp

import (
	"net/http"
	"net/url"
	"strings"
)

// param is one field of an authorization response, kept in the order Auth0 sends them.
type param struct {
	Name, Value string
}

// encodeParams form-encodes ps in order.
func encodeParams(ps []param) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.Value))
	}
	return b.String()
}

// withState appends state when it is non-empty.
func withState(ps []param, state string) []param {
	if state == "" {
		return ps
	}
	return append(ps, param{"state", state})
}

// deliver sends an authorization response (or error) to redirectURI in the response mode:
// a redirect with a query or a fragment, or a page that posts a form (form_post).
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, redirectURI, mode string, ps []param) {
	w.Header().Set("Cache-Control", "no-store")
	switch mode {
	case "form_post":
		s.render(w, http.StatusOK, "formpost", "Submit this form", struct {
			Action string
			Fields []param
		}{redirectURI, ps})
	case "fragment":
		http.Redirect(w, r, redirectURI+"#"+encodeParams(ps), http.StatusFound)
	default:
		sep := "?"
		if strings.Contains(redirectURI, "?") {
			sep = "&"
			if strings.HasSuffix(redirectURI, "?") || strings.HasSuffix(redirectURI, "&") {
				sep = ""
			}
		}
		http.Redirect(w, r, redirectURI+sep+encodeParams(ps), http.StatusFound)
	}
}

// authError is an OAuth error to send back to the client's redirect_uri.
type authError struct {
	code, description string
}

func (e *authError) params(state string) []param {
	return withState([]param{{"error", e.code}, {"error_description", e.description}}, state)
}
