// Package caddymodule is a Caddy HTTP handler that puts an OpenID Connect login in front of
// any application and passes the user's identity, and any impersonator's, to it in request
// headers and placeholders.
package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/policy"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler requires an OpenID Connect login for the requests it handles and tells the
// application who the user is.
type Handler struct {
	// The OpenID provider's issuer URL, exactly as its discovery document states it
	// (Auth0's ends with "/"). Required.
	Issuer string `json:"issuer,omitempty"`
	// The client (application) ID registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`
	// The client secret. Required for the code exchange of confidential clients.
	ClientSecret string `json:"client_secret,omitempty"`
	// Where the provider sends the browser back: a path on the request's own host
	// ("/oauth2/callback") or an absolute URL. Its directory holds the module's endpoints
	// (start, logout, userinfo, impersonation/...). Default: /oauth2/callback.
	RedirectURI string `json:"redirect_uri,omitempty"`
	// Scopes requested. Default: openid profile email.
	Scopes []string `json:"scopes,omitempty"`
	// Sent as the `audience` authorization parameter (Auth0) when set. An access token is
	// forwarded upstream only when it verifies for this audience. Default: none.
	Audience string `json:"audience,omitempty"`
	// Secrets of at least 32 bytes: the first seals cookies, every one opens them (rotation).
	// Required.
	SessionSecrets []string `json:"session_secrets,omitempty"`
	// The session cookie. Default: name _oidc_auth, host-only, SameSite=Lax, Secure.
	Cookie *CookieConfig `json:"cookie,omitempty"`
	// How long a session lasts, however active. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// How long a session may go unused before it ends. Default: 0 (no idle timeout).
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// Renew the tokens with the refresh token shortly before they expire (request the
	// offline_access scope too). Impersonated sessions are never refreshed. Default: false.
	Refresh bool `json:"refresh,omitempty"`
	// What an unauthenticated request gets: "redirect" sends browser navigations to the
	// provider and answers other requests 401; "deny" answers 401 to everyone. Default: redirect.
	Unauthenticated string `json:"unauthenticated,omitempty"`
	// Who may in. Default: every authenticated user.
	Allow *AllowConfig `json:"allow,omitempty"`
	// Present = impersonated sign-ins are accepted under this policy. Default: absent (refused).
	Impersonation *ImpersonationConfig `json:"impersonation,omitempty"`
	// The identity headers sent upstream. Default: see HeadersConfig.
	Headers *HeadersConfig `json:"headers,omitempty"`
	// Further claims kept in the session for the {http.auth.user.claims.NAME} placeholders,
	// besides those the headers name. Default: none.
	SessionClaims []string `json:"session_claims,omitempty"`

	sealer     *session.Sealer
	jar        session.Jar
	prefix     string // the endpoints' path prefix, e.g. /oauth2/
	provider   *provider
	allow      *policy.Allow
	imp        *impersonationPolicy
	headers    headerPlan
	keep       []string // claims kept in the session
	stateKeys  [][]byte // the first mints login states; all open them (secret rotation)
	signedKeys [][]byte // the same for signed impersonation states
	store      store.Store
	limiter    *callbackLimiter
	storeKey   string
	logger     *zap.Logger
	audit      *zap.Logger
	now        func() time.Time
	stateLimit int

	unauthMode unauthenticatedMode
}

// CookieConfig sets the session cookie's name and attributes.
type CookieConfig struct {
	// The cookie's name; a host-only Secure cookie carries the __Host- prefix instead of leading
	// underscores. Default: _oidc_auth.
	Name string `json:"name,omitempty"`
	// The Domain attribute, to share the session with subdomains. Default: host-only.
	Domain string `json:"domain,omitempty"`
	// lax, strict or none. Default: lax.
	SameSite string `json:"same_site,omitempty"`
	// Send the cookies without the Secure attribute, for plain-http development only.
	// Default: false.
	Insecure bool `json:"insecure,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// testHookProvisioned, when set by a test, sees every handler Caddy provisions, so end-to-end
// tests can move the handler's clock.
var testHookProvisioned func(*Handler)

// Provision fills defaults, resolves placeholders such as {env.*} and builds what requests use.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if h.now == nil {
		h.now = time.Now
	}
	repl := caddy.NewReplacer()
	h.Issuer = repl.ReplaceKnown(h.Issuer, "")
	h.ClientID = repl.ReplaceKnown(h.ClientID, "")
	h.ClientSecret = repl.ReplaceKnown(h.ClientSecret, "")
	h.RedirectURI = repl.ReplaceKnown(h.RedirectURI, "")
	h.Audience = repl.ReplaceKnown(h.Audience, "")
	secrets := make([]string, 0, len(h.SessionSecrets))
	for _, s := range h.SessionSecrets {
		if s = repl.ReplaceKnown(s, ""); s != "" {
			secrets = append(secrets, s)
		}
	}
	h.SessionSecrets = secrets

	if h.RedirectURI == "" {
		h.RedirectURI = "/oauth2/callback"
	}
	if len(h.Scopes) == 0 {
		h.Scopes = []string{"openid", "profile", "email"}
	}
	if h.Cookie == nil {
		h.Cookie = new(CookieConfig)
	}
	if h.Cookie.Name == "" {
		h.Cookie.Name = "_oidc_auth"
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(12 * time.Hour)
	}
	if h.Unauthenticated == "" {
		h.Unauthenticated = "redirect"
	}
	if h.Headers == nil {
		h.Headers = new(HeadersConfig)
	}
	h.stateLimit = maxAttempts
	if err := h.validate(); err != nil {
		return err
	}

	var err error
	if h.sealer, err = session.NewSealer(h.SessionSecrets); err != nil {
		return fmt.Errorf("oidc_auth session_secret: %w", err)
	}
	for _, secret := range h.SessionSecrets {
		h.stateKeys = append(h.stateKeys, deriveKey(secret, "caddy-oidc-auth state v1"))
		h.signedKeys = append(h.signedKeys, deriveKey(secret, "caddy-oidc-auth impersonation state v1"))
	}
	h.jar = session.NewJar(h.Cookie.Name, h.Cookie.Domain, !h.Cookie.Insecure, sameSites[h.Cookie.SameSite],
		func() time.Time { return h.now() })
	h.prefix = endpointPrefix(h.RedirectURI)
	if h.allow, err = h.Allow.compile(); err != nil {
		return fmt.Errorf("oidc_auth allow: %w", err)
	}
	if h.Impersonation != nil {
		if h.imp, err = newImpersonationPolicy(h.Impersonation); err != nil {
			return fmt.Errorf("oidc_auth impersonation: %w", err)
		}
	}
	h.headers = newHeaderPlan(h.Headers)
	h.keep = keptClaims(h.headers, h.SessionClaims)
	h.storeKey = h.Issuer + "\x00" + h.ClientID
	if h.store, err = loadStore(h.storeKey); err != nil {
		return err
	}
	h.provider = newProvider(ctx, h)
	h.limiter = newCallbackLimiter()
	if testHookProvisioned != nil {
		testHookProvisioned(h)
	}
	return nil
}

// validate checks what Provision filled in; it names the option, never a secret's value.
func (h *Handler) validate() error {
	if h.Issuer == "" {
		return errors.New("oidc_auth: issuer is required")
	}
	if u, err := url.Parse(h.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("oidc_auth issuer %q: not an http(s) URL", h.Issuer)
	}
	if h.ClientID == "" {
		return errors.New("oidc_auth: client_id is required")
	}
	if len(h.SessionSecrets) == 0 {
		return errors.New("oidc_auth: session_secret is required")
	}
	for i, s := range h.SessionSecrets {
		if len(s) < session.MinSecretLen {
			return fmt.Errorf("oidc_auth session_secret #%d: %d bytes, at least %d are required", i+1, len(s), session.MinSecretLen)
		}
	}
	if err := validateRedirectURI(h.RedirectURI); err != nil {
		return err
	}
	switch ss, ok := sameSites[h.Cookie.SameSite]; {
	case !ok:
		return fmt.Errorf("oidc_auth cookie same_site %q: want lax, strict or none", h.Cookie.SameSite)
	case ss == http.SameSiteNoneMode && h.Cookie.Insecure:
		return errors.New("oidc_auth cookie: same_site none needs Secure cookies; remove insecure")
	}
	if h.Cookie.Name != strings.Map(cookieNameRune, h.Cookie.Name) {
		return fmt.Errorf("oidc_auth cookie name %q: use letters, digits, '_' and '-' only", h.Cookie.Name)
	}
	var ok bool
	if h.unauthMode, ok = unauthenticatedModes[h.Unauthenticated]; !ok {
		return fmt.Errorf("oidc_auth unauthenticated %q: want redirect or deny", h.Unauthenticated)
	}
	if h.SessionLifetime < 0 || h.SessionIdle < 0 {
		return errors.New("oidc_auth: session_lifetime and session_idle must not be negative")
	}
	return nil
}

// sameSites are the cookie same_site values; "" is the default, lax.
var sameSites = map[string]http.SameSite{"": http.SameSiteLaxMode, "lax": http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}

// unauthenticatedMode is what an unauthenticated request gets.
type unauthenticatedMode uint8

const (
	redirectNavigations unauthenticatedMode = iota // browser navigations go to the provider; the rest get 401
	denyAll                                        // everyone gets 401
)

var unauthenticatedModes = map[string]unauthenticatedMode{"redirect": redirectNavigations, "deny": denyAll}

func cookieNameRune(r rune) rune {
	if r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
		return r
	}
	return -1
}

func validateRedirectURI(s string) error {
	if strings.HasPrefix(s, "/") {
		if strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\?#") {
			return fmt.Errorf("oidc_auth redirect_uri %q: a path must be a plain absolute path", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasPrefix(u.Path, "/") {
		return fmt.Errorf("oidc_auth redirect_uri %q: want a path starting with / or an absolute http(s) URL", s)
	}
	return nil
}

// endpointPrefix is the directory of the redirect URI's path: /oauth2/callback → /oauth2/.
func endpointPrefix(redirectURI string) string {
	p := redirectURI
	if u, err := url.Parse(redirectURI); err == nil && u.Host != "" {
		p = u.Path
	}
	return p[:strings.LastIndexByte(p, '/')+1]
}

// Validate is Caddy's check after Provision; everything was checked there already.
func (h *Handler) Validate() error { return nil }

// Cleanup releases the handler's share of the replay and one-time-token store.
func (h *Handler) Cleanup() error {
	if h.store != nil {
		return releaseStore(h.storeKey)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
