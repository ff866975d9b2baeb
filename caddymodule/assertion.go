package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/relyingparty/caddy-oidc-auth/internal/assertion"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// AssertionConfig sends the upstream a signed identity assertion: a short-lived ES256 JWT
// that the application verifies with the keys at <prefix>jwks.json, instead of trusting
// headers. Its claims: iss, aud, sub, iat, nbf, exp, jti; email and email_verified (only for
// a verified email); name, preferred_username, groups; sid (the module's session ID); and, on
// an impersonated session, act {sub, email} (RFC 8693), with act.email only when the provider
// or trust_impersonator_email vouches for it, as for the impersonator email header.
type AssertionConfig struct {
	// The request header that carries it. The name is a managed header: stripped, in any
	// spelling, from every incoming request. Default: X-Identity-Assertion.
	Header string `json:"header,omitempty"`
	// The aud claim: the name your application checks the assertion was made for. Required.
	Audience string `json:"audience,omitempty"`
	// The iss claim: the site's origin, e.g. https://app.example.com. Default: the origin of
	// an absolute redirect_uri; required with a relative one (the request's Host header is
	// the client's to choose, so it never names the issuer).
	Issuer string `json:"issuer,omitempty"`
	// How long an assertion is valid, at most 1h, and never past the session's end. An
	// assertion is reused while more than half of it remains. Default: 5m.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// How old the signing key grows before a new one replaces it, at least 1h; the old key
	// stays published until what it signed has expired. With several handlers sharing a
	// storage, the shortest applies. Default: 720h (30 days).
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`
}

const (
	// jwksMaxAge is how long a client may cache jwks.json; a new key is published well before
	// (assertion.PublishAhead) it signs.
	jwksMaxAge               = 30 * time.Second
	defaultAssertionHeader   = "X-Identity-Assertion"
	defaultAssertionLifetime = 5 * time.Minute
	defaultKeyRotation       = 30 * 24 * time.Hour
	minKeyRotation           = time.Hour
	minAssertionLifetime     = 10 * time.Second
)

// Headers an assertion must not be sent in: the request's framing and routing, its cookies
// and credentials.
var reservedAssertionHeaders = []string{"Authorization", "Connection", "Content-Length", "Content-Type", "Cookie",
	"Host", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// assertionSigner is a handler's assertion: its configuration resolved, its share of the key
// manager, and the assertions recently signed.
type assertionSigner struct {
	header   string // canonical
	audience string
	issuer   string
	lifetime time.Duration
	rotation time.Duration
	keys     *keyManager
	poolKey  string
	cache    *expiringCache[cachedAssertion]
}

// provisionAssertion checks the assertion's configuration, manages its header and takes the
// storage's key manager, creating the first key when there is none.
func (h *Handler) provisionAssertion(ctx caddy.Context) error {
	c := h.Assertion
	repl := caddy.NewReplacer()
	c.Audience = repl.ReplaceKnown(c.Audience, "")
	c.Issuer = repl.ReplaceKnown(c.Issuer, "")
	if c.Header == "" {
		c.Header = defaultAssertionHeader
	}
	if c.Lifetime == 0 {
		c.Lifetime = caddy.Duration(defaultAssertionLifetime)
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = caddy.Duration(defaultKeyRotation)
	}
	if err := c.validate(); err != nil {
		return err
	}
	a := &assertionSigner{header: http.CanonicalHeaderKey(c.Header), audience: c.Audience, issuer: c.Issuer,
		lifetime: time.Duration(c.Lifetime), rotation: time.Duration(c.KeyRotation), cache: newAssertionCache()}
	if a.issuer == "" {
		u, err := url.Parse(h.RedirectURI)
		if err != nil || u.Scheme == "" || u.Host == "" {
			// The request's Host is the client's to choose: an issuer taken from it would let a
			// signed-in user have assertions made for any site that trusts these keys.
			return errors.New("oidc_auth assertion: set issuer (the site's origin, e.g. https://app.example.com), or give an absolute redirect_uri: the request's Host header cannot name the issuer")
		}
		a.issuer = u.Scheme + "://" + u.Host
	}
	h.headers.manage(a.header)
	var err error
	if a.keys, a.poolKey, err = acquireKeyManager(ctx, a.rotation); err != nil {
		return fmt.Errorf("oidc_auth assertion: the signing key could not be loaded or created in Caddy's storage: %w", err)
	}
	h.assertion = a
	return nil
}

func (c *AssertionConfig) validate() error {
	if c.Audience == "" {
		return errors.New("oidc_auth assertion: audience is required (the value your application checks in aud)")
	}
	if !isToken(c.Header) {
		return fmt.Errorf("oidc_auth assertion header %q: not a header name", c.Header)
	}
	if containsHeaderName(reservedAssertionHeaders, c.Header) {
		return fmt.Errorf("oidc_auth assertion header %q: reserved, choose another name", c.Header)
	}
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("oidc_auth assertion issuer %q: not an http(s) URL", c.Issuer)
		}
	}
	if d := time.Duration(c.Lifetime); d < minAssertionLifetime || d > assertion.MaxLifetime {
		return fmt.Errorf("oidc_auth assertion lifetime %v: must be between %v and %v", d, minAssertionLifetime, assertion.MaxLifetime)
	}
	if d := time.Duration(c.KeyRotation); d < minKeyRotation {
		return fmt.Errorf("oidc_auth assertion key_rotation %v: must be at least %v", d, minKeyRotation)
	}
	return nil
}

// isToken reports whether s is a header name this module accepts: letters, digits and '-'.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// release gives back the handler's share of the key manager.
func (a *assertionSigner) release() error {
	a.keys.addPeriod(a.rotation, -1)
	_, err := assertionKeys.Delete(a.poolKey)
	return err
}

// setAssertion puts the session's assertion in the request's headers: the one signed for it
// earlier while it is good for more than half its lifetime and under the current key; else a
// new one.
func (h *Handler) setAssertion(r *http.Request, s *session.Session) error {
	a := h.assertion
	now := h.now()
	key := a.keys.current(now)
	if s.ID != "" {
		if e, ok := a.cache.get(s.ID, now); ok && e.kid == key.ID && e.subject == s.Subject &&
			e.tokenExpiry.Equal(s.TokenExpiry) {
			r.Header[a.header] = []string{e.token}
			return nil
		}
	}
	c := claimsOf(s, a.issuer, a.audience, now, a.lifetime)
	tok, err := key.Sign(c)
	if err != nil {
		return err
	}
	if s.ID != "" {
		iat, exp := time.Unix(c.IssuedAt, 0), time.Unix(c.Expiry, 0)
		renewAt := iat.Add(exp.Sub(iat) / 2)
		a.cache.put(s.ID, cachedAssertion{token: tok, kid: key.ID, subject: s.Subject,
			tokenExpiry: s.TokenExpiry}, renewAt, now)
	}
	r.Header[a.header] = []string{tok}
	return nil
}

// claimsOf is what an assertion says of s.
func claimsOf(s *session.Session, iss, aud string, now time.Time, lifetime time.Duration) *assertion.Claims {
	c := &assertion.Claims{
		Issuer:            iss,
		Subject:           s.Subject,
		Audience:          aud,
		IssuedAt:          now.Unix(),
		NotBefore:         now.Unix(),
		Expiry:            assertion.Expiry(now, lifetime, s.Expires).Unix(),
		ID:                assertion.NewID(),
		Name:              s.Name,
		PreferredUsername: s.PreferredUsername,
		Groups:            s.Groups,
		SessionID:         s.ID,
	}
	if s.Email != "" && s.EmailVerified {
		c.Email, c.EmailVerified = s.Email, true
	}
	if s.Impersonated {
		c.Actor = &assertion.Actor{Subject: s.ImpersonatorID}
		if s.ImpersonatorEmailVerified {
			c.Actor.Email = s.ImpersonatorEmail
		}
	}
	return c
}

// serveJWKS publishes the assertion's public keys.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return refuse(errMethod, "", "")
	}
	body, err := h.assertion.keys.jwks(r.Context())
	if err != nil {
		h.logger.Error("encoding the assertion JWKS", zap.Error(err))
		return refuse(errInternal, "", "")
	}
	w.Header().Set("Content-Type", "application/json")
	// Short: an application refetches the set when it meets an unknown kid anyway.
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwksMaxAge/time.Second)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// cachedAssertion is an assertion signed for a session.
type cachedAssertion struct {
	token, kid, subject string
	tokenExpiry         time.Time // the session's tokens: renewed tokens may say otherwise
}

// maxAssertionsPerShard bounds the assertions kept per handler: 16 shards of it.
const maxAssertionsPerShard = 4096

// newAssertionCache keeps each session's assertion until it is due for renewal (renewAt, which
// is before the assertion's expiry).
func newAssertionCache() *expiringCache[cachedAssertion] {
	return newExpiringCache[cachedAssertion](maxAssertionsPerShard)
}
