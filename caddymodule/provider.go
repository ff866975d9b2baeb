package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// discoveryRetry is how long a failed discovery is remembered before the next request tries
// again, so a provider that is down is not hammered by every request.
const discoveryRetry = time.Second

// providerTimeout bounds every call to the provider.
const providerTimeout = 10 * time.Second

var errProviderUnreachable = errors.New("identity provider unreachable")

// provider discovers the OpenID provider lazily: Caddy starts while it is down, and requests
// that need it get a 502 page until it answers.
type provider struct {
	cfg    providerConfig
	ctx    context.Context // Caddy's long-lived context, carrying the HTTP client
	client *http.Client

	cur atomic.Pointer[discovered]

	mu       sync.Mutex // guards what follows
	inflight *discovery // the discovery under way, shared by every request waiting for it
	lastFail time.Time  // when the last discovery failed (after it returned)
	lastErr  error
}

// discovery is one attempt; done is closed when d and err are set.
type discovery struct {
	done chan struct{}
	d    *discovered
	err  error
}

// discovered is what one successful discovery yields.
type discovered struct {
	p             *oidc.Provider
	issuer        string
	idVerifier    *oidc.IDTokenVerifier
	atVerifier    *oidc.IDTokenVerifier // access tokens for the configured audience; nil without one
	endpoint      oauth2.Endpoint
	userinfoURL   string
	endSessionURL string
	keys          *keySet // the signing keys, for bearer tokens
}

// providerConfig is what the provider needs of the module's configuration.
type providerConfig struct {
	issuer, clientID, clientSecret string
	audience                       string // "" = access tokens are never checked for an audience
	scopes                         []string
	clientAuth                     clientAuth
	clientKey                      *clientKey    // signs client assertions; nil unless private_key_jwt
	timeout                        time.Duration // bounds every call; 0 = providerTimeout
	metrics                        *metrics
	now                            func() time.Time
	logger                         *zap.Logger
}

func newProvider(ctx context.Context, cfg providerConfig) *provider {
	if cfg.timeout == 0 {
		cfg.timeout = providerTimeout
	}
	// A transport of its own: closing its idle connections at Cleanup touches no one else's.
	p := &provider{cfg: cfg}
	var base http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if cfg.clientKey != nil {
		base = &assertingTransport{next: base, p: p}
	}
	transport := &timedTransport{next: base, m: cfg.metrics, endpoint: p.endpointOf}
	p.client = &http.Client{Timeout: cfg.timeout, Transport: transport, CheckRedirect: keepPostsHome}
	p.ctx = oidc.ClientContext(ctx, p.client)
	return p
}

// keepPostsHome follows redirects of GETs (discovery, keys) as net/http does, and none of a
// POST: a token request carries the code, its verifier, a refresh token or the client's
// secret, and a 307 or 308 would have net/http send them on to wherever it points.
func keepPostsHome(req *http.Request, via []*http.Request) error {
	if via[0].Method == http.MethodPost {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// get returns the discovered provider, discovering it first when needed. Concurrent
// requests share one discovery; after a failure, requests fail at once for discoveryRetry.
func (p *provider) get() (*discovered, error) {
	if d := p.cur.Load(); d != nil {
		return d, nil
	}
	p.mu.Lock()
	if d := p.cur.Load(); d != nil {
		p.mu.Unlock()
		return d, nil
	}
	if p.lastErr != nil && p.cfg.now().Sub(p.lastFail) < discoveryRetry {
		err := p.lastErr
		p.mu.Unlock()
		return nil, err
	}
	call := p.inflight
	if call == nil {
		call = &discovery{done: make(chan struct{})}
		p.inflight = call
		go p.run(call)
	}
	p.mu.Unlock()
	<-call.done
	return call.d, call.err
}

// run performs one discovery and publishes its outcome.
func (p *provider) run(call *discovery) {
	d, err := p.discover()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		cause := discoveryCause(p.cfg.issuer, err)
		call.err = &discoveryError{cause: cause, err: err}
		p.lastFail, p.lastErr = p.cfg.now(), call.err
		p.cfg.logger.Warn("provider discovery failed", zap.String("issuer", p.cfg.issuer),
			zap.String("cause", cause), zap.Error(err))
	} else {
		call.d = d
		p.lastErr = nil
		p.cur.Store(d)
	}
	p.inflight = nil
	close(call.done)
}

func (p *provider) discover() (*discovered, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.timeout)
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.cfg.issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		JWKSURI     string   `json:"jwks_uri"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("decoding discovery document: %w", err)
	}
	// The key set keeps the context it is made with: Caddy's long-lived one, never a request's.
	d := &discovered{
		p:             op,
		issuer:        p.cfg.issuer,
		idVerifier:    op.VerifierContext(p.ctx, &oidc.Config{ClientID: p.cfg.clientID, Now: p.cfg.now}),
		endpoint:      op.Endpoint(),
		userinfoURL:   op.UserInfoEndpoint(),
		endSessionURL: meta.EndSession,
		keys:          &keySet{url: meta.JWKSURI, client: p.client, timeout: p.cfg.timeout, now: p.cfg.now, logger: p.cfg.logger},
	}
	d.endpoint.AuthStyle = p.cfg.clientAuth.style(meta.AuthMethods)
	if p.cfg.clientAuth == clientAuthPrivateKeyJWT && len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, "private_key_jwt") {
		// Discovery documents are not always complete: warn, and let the provider answer.
		p.cfg.logger.Warn("the provider does not list private_key_jwt among its token endpoint auth methods",
			zap.Strings("token_endpoint_auth_methods_supported", meta.AuthMethods))
	}
	if p.cfg.audience != "" {
		d.atVerifier = op.VerifierContext(p.ctx, &oidc.Config{ClientID: p.cfg.audience, Now: p.cfg.now})
	}
	return d, nil
}

// oauth2Config is the client configuration with the redirect URI of a request (a configured
// path is on the request's own host).
func (p *provider) oauth2Config(d *discovered, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.clientID,
		ClientSecret: p.cfg.clientSecret,
		Endpoint:     d.endpoint,
		RedirectURL:  redirectURL,
		Scopes:       p.cfg.scopes,
	}
}

// clientContext is a request's context carrying the module's HTTP client for oauth2 and go-oidc.
func (p *provider) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}

// logoutURL is where the browser goes to end its session at the provider too, or "" when the
// provider offers no logout: the standard end_session_endpoint, else Auth0's /v2/logout.
func (p *provider) logoutURL(d *discovered, returnTo, idTokenHint string) string {
	if d.endSessionURL != "" {
		u, err := url.Parse(d.endSessionURL)
		if err != nil {
			return ""
		}
		q := u.Query()
		q.Set("client_id", p.cfg.clientID)
		q.Set("post_logout_redirect_uri", returnTo)
		if idTokenHint != "" {
			q.Set("id_token_hint", idTokenHint)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if isAuth0(d.issuer) {
		q := url.Values{"client_id": {p.cfg.clientID}, "returnTo": {returnTo}}
		return strings.TrimSuffix(d.issuer, "/") + "/v2/logout?" + q.Encode()
	}
	return ""
}

// isAuth0 tells an Auth0 tenant by its issuer host (tenant.auth0.com, tenant.eu.auth0.com, ...).
func isAuth0(issuer string) bool {
	u, err := url.Parse(issuer)
	return err == nil && strings.HasSuffix(u.Hostname(), ".auth0.com")
}

// clientAuth is how the client authenticates at the token endpoint.
type clientAuth uint8

const (
	clientAuthAuto          clientAuth = iota // as the discovery document says, preferring HTTP Basic
	clientAuthBasic                           // client_secret_basic
	clientAuthPost                            // client_secret_post
	clientAuthPrivateKeyJWT                   // private_key_jwt: a client assertion signed with client_key
)

var clientAuths = map[string]clientAuth{"": clientAuthAuto, "auto": clientAuthAuto,
	"client_secret_basic": clientAuthBasic, "client_secret_post": clientAuthPost,
	"private_key_jwt": clientAuthPrivateKeyJWT}

// style is the oauth2 authentication style for a provider that supports methods (from its
// token_endpoint_auth_methods_supported; none listed means client_secret_basic, the default
// of OpenID Connect Discovery).
func (a clientAuth) style(methods []string) oauth2.AuthStyle {
	switch {
	case a == clientAuthPost, a == clientAuthPrivateKeyJWT:
		// private_key_jwt: client_id in the body and no secret; the assertion is added by
		// assertingTransport.
		return oauth2.AuthStyleInParams
	case a == clientAuthBasic, len(methods) == 0, slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// endpointOf names the provider endpoint a request goes to, for the metrics.
func (p *provider) endpointOf(r *http.Request) string {
	u := r.URL.String()
	if strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		return "discovery"
	}
	if d := p.cur.Load(); d != nil {
		switch u {
		case d.endpoint.TokenURL:
			return "token"
		case d.userinfoURL:
			return "userinfo"
		}
	}
	if path := strings.ToLower(r.URL.Path); strings.Contains(path, "jwks") || strings.HasSuffix(path, "/keys") || strings.HasSuffix(path, "/certs") {
		return "jwks"
	}
	return "other"
}
