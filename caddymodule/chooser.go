package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// A handler naming several providers accepts a session of any of them: staff signed in at
// one provider, partners at another, on the same route. Each provider keeps its own cookie,
// callback and states, so a response is never attributed to the wrong provider; a browser
// without a session chooses where to sign in.

// provisionChoices provisions one handler per named provider, each with this route's allow
// rules and headers.
func (h *Handler) provisionChoices(ctx caddy.Context) error {
	for _, name := range h.Providers {
		c := &Handler{Providers: []string{name}, Allow: h.Allow, Headers: h.Headers, Assertion: h.Assertion, parent: h}
		if err := c.Provision(ctx); err != nil {
			return err
		}
		h.choices = append(h.choices, c)
	}
	h.logger = ctx.Logger()
	return nil
}

// serveChoices serves a request for a handler of several providers: the endpoints of the
// provider whose prefix the path has, else the first provider's session the request carries,
// else the chooser (navigations) or a 401.
func (h *Handler) serveChoices(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	for _, c := range h.choices {
		c.headers.strip(r.Header)
	}
	for _, c := range h.choices {
		if rest, ok := strings.CutPrefix(r.URL.Path, c.prefix); ok && c.endpoint(rest) != nil {
			return c.ServeHTTP(w, r, next)
		}
	}
	for _, c := range h.choices {
		if c.hasSessionCookie(r) {
			return c.ServeHTTP(w, r, next)
		}
	}
	first := h.choices[0]
	if !isNavigation(r) || first.unauthMode != redirectNavigations {
		return first.answer(w, r, refuse(errUnauthenticated, "", ""))
	}
	rd := safeReturnTo(r.URL.RequestURI(), "/")
	d := pageData{Title: "Sign in", Message: "Choose where to sign in."}
	for _, c := range h.choices {
		d.Choices = append(d.Choices, choice{Name: c.providerName, URL: c.startURL(rd)})
	}
	first.writePage(w, http.StatusOK, "chooser.html", d)
	return nil
}

// choice is one provider on the chooser page.
type choice struct{ Name, URL string }

// hasSessionCookie reports whether the request carries this handler's session cookie, whole
// or chunked.
func (h *Handler) hasSessionCookie(r *http.Request) bool {
	_, ok := session.ReadChunked(r, h.jar.Base)
	return ok
}
