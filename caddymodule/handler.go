package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// ServeHTTP strips the managed headers, then serves the module's endpoints, or lets an
// authenticated request through with its identity, or answers an unauthenticated one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.headers.strip(r.Header)

	if rest, ok := strings.CutPrefix(r.URL.Path, h.prefix); ok {
		if serve := h.endpoint(rest); serve != nil {
			serve(w, r)
			return nil
		}
	}

	s := h.currentSession(w, r)
	if s == nil {
		h.unauthenticated(w, r)
		return nil
	}
	h.headers.set(r.Header, s)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		h.placeholders(repl, s)
	}
	if kept, changed := session.WithoutOwnCookies(r.Header["Cookie"], h.jar.Base); changed {
		if kept == "" {
			delete(r.Header, "Cookie")
		} else {
			r.Header["Cookie"] = []string{kept}
		}
	}
	return next.ServeHTTP(w, r)
}

// endpoint returns the handler of the module endpoint at path (relative to the prefix).
func (h *Handler) endpoint(path string) func(http.ResponseWriter, *http.Request) {
	switch path {
	case h.callbackName():
		return h.serveCallback
	case "start":
		return h.serveStart
	case "logout":
		return h.serveLogout
	case "userinfo":
		return h.serveUserinfo
	case "confirm":
		if h.imp != nil {
			return h.serveConfirm
		}
	case "impersonation/end":
		if h.imp != nil {
			return h.serveImpersonationEnd
		}
	case "impersonation/state":
		if h.imp != nil && h.imp.stateMode == stateSigned {
			return h.serveMintState
		}
	}
	return nil
}

// callbackName is the last element of the redirect URI's path.
func (h *Handler) callbackName() string {
	p := h.RedirectURI
	return p[strings.LastIndexByte(p, '/')+1:]
}

// unauthenticated sends a browser navigation to the provider and answers anything else 401.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if h.unauthMode == redirectNavigations && isNavigation(r) {
		h.startLogin(w, r, safeReturnTo(r.URL.RequestURI(), "/"))
		return
	}
	h.writeError(w, r, errUnauthenticated)
}

// serveStart begins a login that returns to ?rd=.
func (h *Handler) serveStart(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.writeError(w, r, errMethod)
		return
	}
	h.startLogin(w, r, safeReturnTo(r.URL.Query().Get("rd"), "/"))
}

// serveLogout clears the session and, when the provider offers it, ends the provider's too.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		h.writeError(w, r, errMethod)
		return
	}
	rd := safeReturnTo(r.URL.Query().Get("rd"), "/")
	s := h.openSession(r)
	h.jar.ClearAll(w, h.jar.Base)
	h.jar.ClearAll(w, h.jar.StashName())
	idToken := ""
	if s != nil {
		h.event(evLogout, r, entryFor(s))
		idToken = s.IDToken
	}
	w.Header().Set("Cache-Control", "no-store")
	if d, err := h.provider.get(); err == nil {
		if u := h.logoutURL(d, h.absoluteURL(r, rd), idToken); u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
	}
	http.Redirect(w, r, rd, http.StatusFound)
}

// absoluteURL makes a same-origin path absolute: on the origin of an absolute redirect_uri
// (right behind a proxy that ends TLS), else on the request's own scheme and host.
func (h *Handler) absoluteURL(r *http.Request, path string) string {
	if u, err := url.Parse(h.RedirectURI); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host + path
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host + path
}

// serveUserinfo answers the current identity as JSON, 401 without a session.
func (h *Handler) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	s := h.currentSession(w, r)
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": errUnauthenticated.Code, "message": errUnauthenticated.Message})
		return
	}
	info := map[string]any{
		"sub":                s.Subject,
		"email":              s.Email,
		"email_verified":     s.EmailVerified,
		"name":               s.Name,
		"preferred_username": s.PreferredUsername,
		"groups":             nonNil(s.Groups),
		"impersonated":       s.Impersonated,
		"session_id":         s.ID,
		"expires_at":         s.Expires.Unix(),
		"token_audience":     tokenAudience(s),
	}
	if s.Impersonated {
		info["impersonator"] = map[string]string{"id": s.ImpersonatorID, "email": s.ImpersonatorEmail}
	}
	if len(s.Claims) > 0 {
		c := make(map[string]string, len(s.Claims))
		for _, kv := range s.Claims {
			c[kv.Name] = kv.Value
		}
		info["claims"] = c
	}
	writeJSON(w, http.StatusOK, info)
}

func tokenAudience(s *session.Session) string {
	if s.TokenAudience == "" {
		return "userinfo"
	}
	return s.TokenAudience
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
