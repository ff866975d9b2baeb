package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// ServeHTTP strips the managed headers, then serves the module's endpoints, or lets an
// authenticated request through with its identity, or answers an unauthenticated one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.choices != nil {
		return h.serveChoices(w, r, next)
	}
	// A bearer token is read before the managed headers go: Authorization may be one of them
	// (headers { access_token Authorization }), and is then set again from the verified token.
	var cred bearerOffer
	if h.Bearer != nil {
		cred = readBearer(r.Header)
	}
	h.headers.strip(r.Header)
	if r.Trailer != nil {
		if h.headers.declaresManagedTrailer(r.Trailer) {
			return h.answer(w, r, refuse(errManagedTrailer, "", ""))
		}
		r.Body = &trailerGuard{ReadCloser: r.Body, trailer: r.Trailer, plan: &h.headers}
	}

	bearerRoute := h.Bearer != nil && (cred.present || h.Bearer.Only)
	if rest, ok := strings.CutPrefix(r.URL.Path, h.prefix); ok {
		if rest == "userinfo" && bearerRoute {
			return h.answer(w, r, h.serveBearerUserinfo(w, r, cred))
		}
		if serve := h.endpoint(rest); serve != nil {
			return h.answer(w, r, serve(w, r))
		}
	}

	if bearerRoute {
		return h.serveBearer(w, r, next, cred)
	}
	s := h.currentSession(w, r)
	if s == nil {
		return h.answer(w, r, h.unauthenticated(w, r))
	}
	if err := h.authorize(r, s); err != nil {
		return h.answer(w, r, err)
	}
	return h.pass(w, r, next, s)
}

// pass sends an authenticated request on with its identity: the headers, the placeholders,
// and without the module's own cookies.
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, s *session.Session) error {
	h.headers.set(r.Header, s)
	if h.assertion != nil {
		if err := h.setAssertion(r, s); err != nil {
			h.logger.Error("signing the identity assertion", zap.Error(err))
			return h.answer(w, r, refuse(errInternal, "", ""))
		}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		publishPlaceholders(repl, s)
	}
	if cookies := r.Header["Cookie"]; len(cookies) > 0 {
		if kept, changed := session.WithoutOwnCookies(cookies, h.jar.Base); changed {
			switch {
			case kept == "":
				delete(r.Header, "Cookie")
			case len(cookies) == 1:
				cookies[0] = kept // the request's own slice: no new one
			default:
				r.Header["Cookie"] = []string{kept}
			}
		}
	}
	return next.ServeHTTP(w, r)
}

// endpoint returns the handler of the module endpoint at path (relative to the prefix).
func (h *Handler) endpoint(path string) func(http.ResponseWriter, *http.Request) error {
	switch path {
	case h.callbackName:
		return h.serveCallback
	case "start":
		return h.serveStart
	case "logout":
		return h.serveLogout
	case "userinfo":
		return h.serveUserinfo
	case "backchannel-logout":
		return h.serveBackchannelLogout
	case "jwks.json":
		if h.assertion != nil {
			return h.serveJWKS
		}
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

// unauthenticated sends a browser navigation to the provider and answers anything else 401.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	if h.unauthMode == redirectNavigations && isNavigation(r) {
		return h.startLogin(w, r, safeReturnTo(r.URL.RequestURI(), "/"))
	}
	if h.Bearer != nil {
		return bearerMissing()
	}
	return refuse(errUnauthenticated, "", "")
}

// serveStart begins a login that returns to ?rd=.
func (h *Handler) serveStart(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return refuse(errMethod, "", "")
	}
	return h.startLogin(w, r, safeReturnTo(r.URL.Query().Get("rd"), "/"))
}

// serveLogout clears the session and, when the provider offers it, ends the provider's too.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	rd := safeReturnTo(r.URL.Query().Get("rd"), "/")
	if !sameOrigin(r) || foreignReferer(r) {
		// A link or an image on any page could sign the user out here and at the provider:
		// a request from elsewhere only gets the question, whose answer is a same-origin POST.
		h.writePage(w, http.StatusOK, "logout.html", pageData{Title: "Sign out?", Host: r.Host,
			Action: h.prefix + "logout?rd=" + url.QueryEscape(rd), Next: rd})
		return nil
	}
	s, _, ended := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	h.recordEnded(r, ended)
	// Everything of this browser's goes: the session, a stashed one, a confirmation waiting
	// for its answer and logins in progress.
	h.jar.ClearAll(w, h.jar.Base)
	h.jar.ClearAll(w, h.jar.StashName())
	h.jar.ClearAll(w, h.jar.ConfirmName())
	for _, c := range session.CookiesWithPrefix(r, h.jar.AttemptPrefix()) {
		h.jar.Clear(w, c[0])
	}
	idToken := ""
	if s != nil && h.ServerSideSessions {
		h.forgetServerSide(r.Context(), s.ID)
	}
	if s != nil {
		if s.Impersonated {
			h.event(evImpersonationEnded, r, entryFor(s).because("signed out"))
		}
		h.event(evLogout, r, entryFor(s))
		idToken = s.IDToken
	}
	w.Header().Set("Cache-Control", "no-store")
	if d, err := h.provider.get(); err == nil {
		if u := h.provider.logoutURL(d, h.absoluteURL(r, rd), idToken); u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return nil
		}
	}
	http.Redirect(w, r, rd, http.StatusFound)
	return nil
}

// userinfo is the JSON of the userinfo endpoint: a contract with the pages and scripts that
// read it.
type userinfo struct {
	Sub               string            `json:"sub"`
	Email             string            `json:"email"`
	EmailVerified     bool              `json:"email_verified"`
	Name              string            `json:"name"`
	PreferredUsername string            `json:"preferred_username"`
	Groups            []string          `json:"groups"`
	Impersonated      bool              `json:"impersonated"`
	Impersonator      *userinfoActor    `json:"impersonator,omitempty"`
	SessionID         string            `json:"session_id"`
	ExpiresAt         int64             `json:"expires_at"`
	TokenAudience     string            `json:"token_audience"`
	Claims            map[string]string `json:"claims,omitempty"`
}

type userinfoActor struct {
	ID            string `json:"id"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"` // Auth0's impersonator email: false
}

// serveUserinfo answers the current identity as JSON, 401 without a session, 403 when this
// handler does not admit the session.
func (h *Handler) serveUserinfo(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return refuse(errMethod, "", "")
	}
	s := h.currentSession(w, r)
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, errorBody{errUnauthenticated.Code, errUnauthenticated.Message})
		return nil
	}
	if err := h.authorize(r, s); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userinfoOf(s))
	return nil
}

// serveBearerUserinfo answers the identity of the request's bearer token, as the userinfo of
// a session: what the application would be told.
func (h *Handler) serveBearerUserinfo(w http.ResponseWriter, r *http.Request, cred bearerOffer) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return refuse(errMethod, "", "")
	}
	s, err := h.bearerAdmitted(r, cred)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userinfoOf(s))
	return nil
}

// userinfoOf is the userinfo JSON of a session.
func userinfoOf(s *session.Session) userinfo {
	info := userinfo{
		Sub:               s.Subject,
		Email:             s.Email,
		EmailVerified:     s.EmailVerified,
		Name:              s.Name,
		PreferredUsername: s.PreferredUsername,
		Groups:            s.Groups,
		Impersonated:      s.Impersonated,
		SessionID:         s.ID,
		ExpiresAt:         s.Expires.Unix(),
		TokenAudience:     tokenAudience(s),
	}
	if info.Groups == nil {
		info.Groups = []string{}
	}
	if s.Impersonated {
		info.Impersonator = &userinfoActor{ID: s.ImpersonatorID, Email: s.ImpersonatorEmail, EmailVerified: s.ImpersonatorEmailVerified}
	}
	if len(s.Claims) > 0 {
		info.Claims = make(map[string]string, len(s.Claims))
		for _, kv := range s.Claims {
			info.Claims[kv.Name] = kv.Value
		}
	}
	return info
}

// startURL is the module's start endpoint returning to rd.
func (h *Handler) startURL(rd string) string {
	return h.prefix + "start?rd=" + url.QueryEscape(rd)
}

// redirectURL is the absolute redirect URI: as configured, or the configured path on the
// request's scheme and host.
func (h *Handler) redirectURL(r *http.Request) string {
	if !strings.HasPrefix(h.RedirectURI, "/") {
		return h.RedirectURI
	}
	return h.absoluteURL(r, h.RedirectURI)
}

// absoluteURL makes a same-origin path absolute: on the origin of an absolute redirect_uri
// (right behind a proxy that ends TLS), else on the request's own scheme and host.
func (h *Handler) absoluteURL(r *http.Request, path string) string {
	if u, err := url.Parse(h.RedirectURI); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host + path
	}
	return requestScheme(r) + "://" + r.Host + path
}

// requestScheme is the scheme the browser used: X-Forwarded-Proto (its last value, http or
// https: the one the trusted proxy appended, as Caddy's reverse_proxy reads it) when the peer
// is one of the server's trusted_proxies, so that a proxy in front that
// ends TLS is seen through; otherwise the connection's own. An untrusted peer's header is
// anyone's to send and is ignored.
func requestScheme(r *http.Request) string {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		var last string
		if v := r.Header.Values("X-Forwarded-Proto"); len(v) > 0 {
			last = v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
		}
		switch p := strings.ToLower(strings.TrimSpace(last)); p {
		case "http", "https":
			return p
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
