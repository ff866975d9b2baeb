// Package caddymodule is a Caddy HTTP handler that puts an OpenID Connect login in front of
// any application and passes the user's identity, and any impersonator's, to it in request
// headers and placeholders.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// The client secret. Required for the code exchange of confidential clients that do not
	// use client_key_file.
	ClientSecret string `json:"client_secret,omitempty"`
	// The client's private key, a PEM file (PKCS#8, PKCS#1 RSA or SEC 1 EC): the client then
	// authenticates at the token endpoint with private_key_jwt (RFC 7523), a short-lived JWT
	// signed RS256 with an RSA key of 2048 bits or more, or ES256 with a P-256 key, whose kid
	// is the RFC 7638 thumbprint of the public key. Register the public key at the provider.
	// Caddyfile: client_key. Default: none.
	ClientKeyFile string `json:"client_key_file,omitempty"`
	// Where the provider sends the browser back: a path on the request's own host
	// ("/oauth2/callback") or an absolute URL. Its directory holds the module's endpoints
	// (start, logout, userinfo, impersonation/...). Default: /oauth2/callback.
	RedirectURI string `json:"redirect_uri,omitempty"`
	// Scopes requested. Default: openid profile email.
	Scopes []string `json:"scopes,omitempty"`
	// How the client authenticates at the token endpoint: client_secret_basic,
	// client_secret_post, private_key_jwt (needs client_key_file), or auto (private_key_jwt
	// when client_key_file is set, otherwise what the provider's discovery document lists,
	// preferring client_secret_basic). Default: auto.
	ClientAuthMethod string `json:"client_auth_method,omitempty"`
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
	// Names of providers of the oidc_auth global option (the oidc_auth app). One: this handler
	// takes that provider's configuration and sets only allow (and may set headers). Several:
	// a session of any of them is accepted, and a browser without one chooses where to sign in.
	// Default: none (this handler's own configuration).
	Providers []string `json:"providers,omitempty"`
	// Who may in. Default: every authenticated user.
	Allow *AllowConfig `json:"allow,omitempty"`
	// Present = API clients may authenticate with an access token (Authorization: Bearer).
	// Default: absent (bearer tokens are not read).
	Bearer *BearerConfig `json:"bearer,omitempty"`
	// Present = impersonated sign-ins are accepted under this policy. Default: absent (refused).
	Impersonation *ImpersonationConfig `json:"impersonation,omitempty"`
	// The identity headers sent upstream. Default: see HeadersConfig.
	Headers *HeadersConfig `json:"headers,omitempty"`
	// Present = the upstream also gets a signed identity assertion (an ES256 JWT) it can
	// verify with the keys at <prefix>jwks.json. Default: absent (none).
	Assertion *AssertionConfig `json:"assertion,omitempty"`
	// Further claims kept in the session for the {http.auth.user.claims.NAME} placeholders,
	// besides those the headers name. Default: none.
	SessionClaims []string `json:"session_claims,omitempty"`
	// Keep sessions in the store: the cookie carries only a sealed ticket, so a session's size
	// does not depend on its tokens. Every instance reads them from the store (Redis, for
	// several), through a short local cache. Default: false (sessions live in their cookie).
	ServerSideSessions bool `json:"server_side_sessions,omitempty"`
	// Where what several instances must share lives (the replay cache, one-time tokens, the
	// one-refresh-at-a-time lock): a module of the http.handlers.oidc_auth.stores namespace,
	// named by "backend". Default: memory (this process only, kept across config reloads).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.handlers.oidc_auth.stores inline_key=backend"`

	sealer         *session.Sealer
	jar            session.Jar
	states         stateKeys
	prefix         string // the endpoints' path prefix, e.g. /oauth2/
	callbackName   string // the redirect URI's last path element, e.g. callback
	callbackPath   string // the callback's path on this host, e.g. /oauth2/callback
	retryURL       string // where "sign in again" links go
	unauthMode     unauthenticatedMode
	provider       *provider
	allow          *policy.Allow
	imp            *impersonationPolicy
	headers        headerPlan
	assertion      *assertionSigner // nil: no assertion
	keep           []string         // claims kept in the session for headers and placeholders
	needs          policy.Needs
	provKey        string // the provider and client sessions must belong to
	decisions      *expiringCache[decision]
	bearers        *expiringCache[*bearer] // verified bearer tokens, by the token
	bearerAudience string
	metrics        *metrics
	tickets        *expiringCache[string] // sealed server-side sessions recently read
	store          store.Store
	ownStore       *MemoryStore // the default store, when no store module is configured
	choices        []*Handler   // with several providers: one handler each (chooser.go)
	parent         *Handler     // the handler of several providers this one is a choice of
	providerName   string       // the name of the provider taken from the oidc_auth app, if any
	// per-client budgets of callbacks that reach the provider (limiter.go)
	unsolicitedLimit, failureLimit *callbackLimiter
	logger                         *zap.Logger
	audit                          *zap.Logger
	now                            func() time.Time
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

// Provision fills defaults, resolves placeholders such as {env.*} and builds what requests use.
func (h *Handler) Provision(ctx caddy.Context) error {
	switch len(h.Providers) {
	case 0:
	case 1:
		if err := h.takeProvider(ctx, h.Providers[0]); err != nil {
			return err
		}
	default:
		if h.Bearer != nil {
			// A token names no provider to choose by: its issuer would pick one, and a route
			// accepting several issuers' tokens is several routes.
			return errors.New("oidc_auth bearer: takes one provider; give each provider's API its own route")
		}
		return h.provisionChoices(ctx)
	}
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if h.now == nil {
		h.now = time.Now
	}
	repl := caddy.NewReplacer()
	h.Issuer = repl.ReplaceKnown(h.Issuer, "")
	h.ClientID = repl.ReplaceKnown(h.ClientID, "")
	h.ClientSecret = repl.ReplaceKnown(h.ClientSecret, "")
	h.ClientKeyFile = repl.ReplaceKnown(h.ClientKeyFile, "")
	h.RedirectURI = repl.ReplaceKnown(h.RedirectURI, "")
	h.Audience = repl.ReplaceKnown(h.Audience, "")
	if h.Bearer != nil {
		h.bearerAudience = repl.ReplaceKnown(h.Bearer.Audience, "")
		if h.bearerAudience == "" {
			h.bearerAudience = h.Audience
		}
		if h.Bearer.ClockSkew == 0 {
			h.Bearer.ClockSkew = caddy.Duration(defaultBearerSkew)
		}
	}
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
	if err := h.validate(); err != nil {
		return err
	}

	clientAuth := clientAuths[h.ClientAuthMethod]
	var clientKey *clientKey
	if h.ClientKeyFile != "" {
		// validate allowed a key only with private_key_jwt, or with auto and no secret.
		clientAuth = clientAuthPrivateKeyJWT
		var err error
		if clientKey, err = loadClientKey(h.ClientKeyFile); err != nil {
			return fmt.Errorf("oidc_auth client_key %q: %w", h.ClientKeyFile, err)
		}
	}

	var err error
	if h.sealer, err = session.NewSealer(h.SessionSecrets); err != nil {
		return fmt.Errorf("oidc_auth session_secret: %w", err)
	}
	h.provKey = providerKey(h.Issuer, h.ClientID)
	h.states = newStateKeys(h.SessionSecrets, h.provKey)
	// The clock is read through h.now at every use, so tests can move it.
	clock := func() time.Time { return h.now() }
	h.jar = session.NewJar(h.Cookie.Name, h.Cookie.Domain, !h.Cookie.Insecure, sameSites[h.Cookie.SameSite], clock)
	h.prefix = endpointPrefix(h.RedirectURI)
	h.callbackName = h.RedirectURI[strings.LastIndexByte(h.RedirectURI, '/')+1:]
	h.callbackPath = h.prefix + h.callbackName
	h.retryURL = h.startURL("/")
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
	if h.Assertion != nil {
		if err := h.provisionAssertion(ctx); err != nil {
			return err
		}
	}
	h.needs = h.allow.Needs()
	if h.imp != nil {
		h.needs = policy.Union(h.needs, h.imp.Needs())
	}
	h.decisions = newDecisionCache()
	if h.Bearer != nil {
		h.bearers = newExpiringCache[*bearer](maxBearersPerShard)
	}
	h.tickets = newTicketCache()
	h.metrics = newMetrics(ctx.GetMetricsRegistry())
	if err := h.provisionStore(ctx); err != nil {
		return err
	}
	h.store = meteredStore{h.store, h.metrics}
	h.provider = newProvider(ctx, providerConfig{issuer: h.Issuer, clientID: h.ClientID, clientSecret: h.ClientSecret,
		audience: h.Audience, scopes: h.Scopes, clientAuth: clientAuth, clientKey: clientKey, now: clock, logger: h.logger,
		metrics: h.metrics})
	h.unsolicitedLimit, h.failureLimit = newCallbackLimiter(), newCallbackLimiter()
	h.reportAtStart(ctx)
	return nil
}

// Validate is Caddy's check after Provision; everything was checked there already.
func (h *Handler) Validate() error { return nil }

// Cleanup closes the idle connections to the provider and releases the handler's share of the
// default store; a configured store module is cleaned up by Caddy.
func (h *Handler) Cleanup() error {
	for _, c := range h.choices {
		_ = c.Cleanup()
	}
	if h.provider != nil {
		// A reload or stop must not leave connections to the provider open.
		h.provider.client.CloseIdleConnections()
	}
	var err error
	if h.assertion != nil {
		err = h.assertion.release()
	}
	if h.ownStore != nil {
		err = errors.Join(err, h.ownStore.Cleanup())
	}
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
