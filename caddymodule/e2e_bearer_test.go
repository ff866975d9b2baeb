package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Bearer tokens through real Caddy: API clients with access tokens from the provider, every
// way a token can be wrong, scopes, impersonation by act, and the headers the app gets.

const testAPI = "https://api.example.com"

// bearerHarness runs the module with bearer tokens for testAPI, configured further by cfg.
func bearerHarness(t *testing.T, cfg func(*Handler)) *harness {
	t.Helper()
	return newHarness(t, func(c *Handler) {
		c.Bearer = &BearerConfig{Audience: testAPI}
		if cfg != nil {
			cfg(c)
		}
	}, nil)
}

// mint is a token of the harness's provider, made as o says; for testAPI about alice unless
// o says otherwise.
func (h *harness) mint(o devidp.AccessTokenOptions) string {
	h.t.Helper()
	if o.Subject == "" {
		o.Subject = "auth0|alice"
	}
	if o.Audience == nil {
		o.Audience = []string{testAPI}
	}
	tok, err := h.idp.MintAccessToken(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// withBearer is an API request carrying the token.
func (h *harness) withBearer(tok string, headers ...string) result {
	h.t.Helper()
	return h.api(http.MethodGet, "/api/reports", append([]string{"Authorization", "Bearer " + tok}, headers...)...)
}

// wantBearerRefused checks a refusal: the status, RFC 6750's challenge with the error code,
// a JSON body with the same code, and no request upstream.
func wantBearerRefused(t *testing.T, h *harness, r result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if _, reached := r.echo(); reached {
		t.Fatal("the refused request reached the app")
	}
	if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="`+code+`"`) {
		t.Errorf("WWW-Authenticate %q, want a Bearer challenge with error %q", ch, code)
	}
	var body errorBody
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Error != code {
		t.Errorf("body %q, want JSON with error %q", r.body, code)
	}
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("a bearer refusal redirected to %s", loc)
	}
}

func TestBearerTokenIsAcceptedWithTheSessionsHeaders(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) {
		c.Headers = &HeadersConfig{Scopes: "X-Forwarded-Scopes", AccessToken: "X-Access-Token"}
	})
	tok := h.mint(devidp.AccessTokenOptions{Scope: "read:reports openid", ClientID: "cli",
		Claims: map[string]any{"email": "alice@example.com", "email_verified": true, "groups": []string{"staff"}}})
	r := h.withBearer(tok, "X-Forwarded-User", "auth0|admin", "X-Forwarded-Impersonated", "false",
		"X_Forwarded_Email", "ceo@example.com", "Cookie", "app=1")
	e, ok := r.echo()
	if r.status != http.StatusOK || !ok {
		t.Fatalf("a good token: status %d, body %s", r.status, r.body)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User": "auth0|alice", "X-Forwarded-Email": "alice@example.com",
		"X-Forwarded-Groups": "staff", "X-Forwarded-Impersonated": "false",
		"X-Forwarded-Scopes": "read:reports openid", "X-Access-Token": tok,
		"Authorization": "Bearer " + tok, "Cookie": "app=1",
	} {
		if got := e.Headers.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want only %q", name, got, want)
		}
	}
	if got := e.Headers.Values("X_forwarded_email"); len(got) != 0 {
		t.Errorf("a client's X_Forwarded_Email reached the app: %q", got)
	}
	if c := r.header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("a bearer request got cookies: %q", c)
	}
	if ev, ok := h.lastEvent(evLogin); !ok || ev["subject"] != "auth0|alice" || ev["reason"] != "bearer token" {
		t.Errorf("the token's first use was not audited as a bearer login: %v", ev)
	}
	n := len(h.events())
	if r := h.withBearer(tok); r.status != http.StatusOK {
		t.Fatalf("the same token again: %d", r.status)
	}
	if len(h.events()) != n {
		t.Errorf("a cached token's second use was audited again: %q", h.events()[n:])
	}
}

func TestBearerTokensAreRefused(t *testing.T) {
	h := bearerHarness(t, nil)
	now := h.clock.Now()
	good := devidp.AccessTokenOptions{}
	for _, tc := range []struct {
		name   string
		o      devidp.AccessTokenOptions
		reason string
	}{
		{"expired beyond the skew", devidp.AccessTokenOptions{IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-31 * time.Second)}, "token expired"},
		{"for another audience", devidp.AccessTokenOptions{Audience: []string{"https://other.example.com"}}, "audience is not this API"},
		{"from another issuer", devidp.AccessTokenOptions{Issuer: "https://evil.example.com/"}, "issuer is not the provider"},
		{"unsigned (alg none)", devidp.AccessTokenOptions{Unsigned: true}, "not a JWT signed with an accepted algorithm"},
		{"with a signature that does not verify", devidp.AccessTokenOptions{BadSignature: true}, "signature does not verify"},
		{"signed by a key the provider does not publish", devidp.AccessTokenOptions{Kid: "not-a-published-kid"}, "signed by a key the provider does not publish"},
		{"an ID token: its nonce", devidp.AccessTokenOptions{Nonce: "n-0S6"}, "an ID token is not an access token"},
		{"an ID token: the client among its audiences", devidp.AccessTokenOptions{Audience: []string{testAPI, testClientID}}, "an ID token is not an access token"},
		{"an ID token: Keycloak's typ ID", devidp.AccessTokenOptions{Claims: map[string]any{"typ": "ID"}}, "an ID token is not an access token"},
		{"an ID token for the client alone", devidp.AccessTokenOptions{Audience: []string{testClientID}, Typ: "JWT"}, "audience is not this API"},
		{"a logout token's typ", devidp.AccessTokenOptions{Typ: "logout+jwt"}, "token type is not an access token"},
		{"not valid yet beyond the skew", devidp.AccessTokenOptions{NotBefore: now.Add(2 * time.Minute)}, "token not valid yet"},
		{"issued in the future beyond the skew", devidp.AccessTokenOptions{IssuedAt: now.Add(2 * time.Minute)}, "token issued in the future"},
		{"without an expiry", devidp.AccessTokenOptions{NoExpiry: true}, "token has no expiry"},
		{"without a subject", devidp.AccessTokenOptions{Claims: map[string]any{"sub": ""}}, "token has no subject"},
		{"an actor without a subject", devidp.AccessTokenOptions{Claims: map[string]any{"act": map[string]any{"sub": 7}}}, "act claim names no actor"},
		{"an actor that is not an object", devidp.AccessTokenOptions{Claims: map[string]any{"act": "auth0|admin"}}, "act claim names no actor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.withBearer(h.mint(tc.o))
			wantBearerRefused(t, h, r, http.StatusUnauthorized, "invalid_token")
			ev, ok := h.lastEvent(evSessionRejected)
			if !ok || ev["reason"] != "bearer token: "+tc.reason {
				t.Errorf("audit %v, want session_rejected with reason %q", ev, tc.reason)
			}
			if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `error_description="`+tc.reason+`"`) {
				t.Errorf("WWW-Authenticate %q does not say %q", ch, tc.reason)
			}
		})
	}
	for name, tok := range map[string]string{
		"garbage":              "not-a-jwt",
		"three empty parts":    "..",
		"a JWS in JSON form":   `{"payload":"e30","signatures":[]}`,
		"larger than 16 KB":    h.mint(devidp.AccessTokenOptions{Claims: map[string]any{"pad": strings.Repeat("x", 17<<10)}}),
		"an HMAC-signed token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhdXRoMHxhbGljZSJ9.c2lnbmF0dXJl",
	} {
		t.Run(name, func(t *testing.T) {
			wantBearerRefused(t, h, h.withBearer(tok), http.StatusUnauthorized, "invalid_token")
		})
	}
	t.Run("within the skew, an expired or early token is still good", func(t *testing.T) {
		for _, o := range []devidp.AccessTokenOptions{
			{IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-20 * time.Second)},
			{NotBefore: now.Add(20 * time.Second), IssuedAt: now.Add(20 * time.Second)},
		} {
			if r := h.withBearer(h.mint(o)); r.status != http.StatusOK {
				t.Errorf("a token within the 30 s skew: %d %s", r.status, r.body)
			}
		}
	})
	t.Run("a good token passes", func(t *testing.T) {
		if r := h.withBearer(h.mint(good)); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func TestMalformedBearerOffersAreBadRequests(t *testing.T) {
	h := bearerHarness(t, nil)
	tok := h.mint(devidp.AccessTokenOptions{})
	for name, headers := range map[string][]string{
		"two Authorization headers":             {"Authorization", "Bearer " + tok, "Authorization", "Bearer " + tok},
		"an empty token":                        {"Authorization", "Bearer   "},
		"two tokens":                            {"Authorization", "Bearer abc def"},
		"a Bearer field after another scheme's": {"Authorization", "Basic YTpi", "Authorization", "Bearer " + tok},
	} {
		t.Run(name, func(t *testing.T) {
			wantBearerRefused(t, h, h.api(http.MethodGet, "/api/reports", headers...), http.StatusBadRequest, "invalid_request")
		})
	}
	t.Run("the scheme is case-insensitive", func(t *testing.T) {
		if r := h.api(http.MethodGet, "/api/reports", "Authorization", "bEaReR "+tok); r.status != http.StatusOK {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("another scheme is the app's business: a cookie session is still required", func(t *testing.T) {
		r := h.api(http.MethodGet, "/api/reports", "Authorization", "Basic YTpi")
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("Basic credentials: %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
}

func TestWithoutATokenBearerRoutesChallengeAndOnlyRoutesNeverRedirect(t *testing.T) {
	t.Run("bearer beside sessions", func(t *testing.T) {
		h := bearerHarness(t, nil)
		r := h.api(http.MethodGet, "/api/reports")
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("an API request without a token: %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
		}
		if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Errorf("a cookie session beside bearer: %v", e.Headers)
		}
	})
	t.Run("bearer only", func(t *testing.T) {
		h := bearerHarness(t, func(c *Handler) { c.Bearer.Only = true })
		r := h.browse("/reports")
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" || r.url.Host != strings.TrimPrefix(h.siteURL, "http://") {
			t.Errorf("a navigation to a bearer-only route: %d at %s, WWW-Authenticate %q", r.status, r.url, r.header.Get("WWW-Authenticate"))
		}
		// A session cookie, however valid, is not read there.
		s := fullSession()
		s.Impersonated, s.Expires = false, h.clock.Now().Add(time.Hour)
		cookie := sealedSessionCookie(h.handler, s)
		if r := h.api(http.MethodGet, "/reports", "Cookie", cookie); r.status != http.StatusUnauthorized {
			t.Errorf("a session cookie on a bearer-only route: %d", r.status)
		}
		if r := h.withBearer(h.mint(devidp.AccessTokenOptions{})); r.status != http.StatusOK {
			t.Errorf("a token on a bearer-only route: %d %s", r.status, r.body)
		}
	})
}

func TestAVerifiedTokenIsKeptUntilItExpiresAndNoLonger(t *testing.T) {
	h := bearerHarness(t, nil)
	now := h.clock.Now()
	tok := h.mint(devidp.AccessTokenOptions{ExpiresAt: now.Add(time.Minute)})
	if r := h.withBearer(tok); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	h.clock.Advance(time.Minute + 29*time.Second)
	if r := h.withBearer(tok); r.status != http.StatusOK {
		t.Fatalf("within the skew after exp: %d %s", r.status, r.body)
	}
	h.clock.Advance(2 * time.Second)
	wantBearerRefused(t, h, h.withBearer(tok), http.StatusUnauthorized, "invalid_token")
}

func TestUnknownKeysFetchTheProvidersKeysAtMostOnceInTenSeconds(t *testing.T) {
	h := bearerHarness(t, nil)
	if r := h.withBearer(h.mint(devidp.AccessTokenOptions{})); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	const jwks = "caddy_oidc_auth_provider_request_duration_seconds"
	fetches := func() float64 { return metricValue(t, jwks, map[string]string{"endpoint": "jwks"}) }
	before := fetches()
	for i := range 30 {
		r := h.withBearer(h.mint(devidp.AccessTokenOptions{Kid: "forged-" + string(rune('a'+i%26))}))
		wantBearerRefused(t, h, r, http.StatusUnauthorized, "invalid_token")
	}
	if n := fetches() - before; n > 1 {
		t.Errorf("30 tokens with unknown keys fetched the key set %v times, want at most 1", n)
	}
	// The provider rotates: a token signed with its new key is good once the set is fetched
	// again, ten seconds on.
	if _, err := h.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(11 * time.Second)
	if r := h.withBearer(h.mint(devidp.AccessTokenOptions{})); r.status != http.StatusOK {
		t.Errorf("a token signed with the provider's new key: %d %s", r.status, r.body)
	}
}

func TestBearerScopesAndAllowRules(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) {
		c.Allow = &AllowConfig{Scopes: []string{"read:reports"}, Groups: []string{"staff"}}
	})
	staff := map[string]any{"groups": []string{"staff"}}
	r := h.withBearer(h.mint(devidp.AccessTokenOptions{Scope: "write:reports", Claims: staff}))
	wantBearerRefused(t, h, r, http.StatusForbidden, "insufficient_scope")
	if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `scope="read:reports"`) {
		t.Errorf("WWW-Authenticate %q does not name the scope required", ch)
	}
	if ev, ok := h.lastEvent(evAccessDenied); !ok || ev["reason"] != "missing scope read:reports" {
		t.Errorf("audit %v", ev)
	}
	if r := h.withBearer(h.mint(devidp.AccessTokenOptions{Scope: "read:reports", Claims: staff})); r.status != http.StatusOK {
		t.Errorf("the scope granted: %d %s", r.status, r.body)
	}
	scp := map[string]any{"groups": []string{"staff"}, "scp": []string{"read:reports"}}
	if r := h.withBearer(h.mint(devidp.AccessTokenOptions{Claims: scp})); r.status != http.StatusOK {
		t.Errorf("the scope granted as scp: %d %s", r.status, r.body)
	}
	r = h.withBearer(h.mint(devidp.AccessTokenOptions{Scope: "read:reports", Claims: map[string]any{"groups": []string{"guests"}}}))
	if r.status != http.StatusForbidden || !strings.Contains(r.body, `"access_denied"`) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("a token outside the groups: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

func TestABearerTokenWithActIsImpersonation(t *testing.T) {
	act := &devidp.Actor{Sub: "auth0|admin"}
	t.Run("without an impersonation block it is refused", func(t *testing.T) {
		h := bearerHarness(t, nil)
		r := h.withBearer(h.mint(devidp.AccessTokenOptions{Act: act}))
		if r.status != http.StatusForbidden || !strings.Contains(r.body, `"impersonation_refused"`) {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if _, reached := r.echo(); reached {
			t.Fatal("the impersonated request reached the app")
		}
		if ev, ok := h.lastEvent(evImpersonationDenied); !ok || ev["impersonator"] != "auth0|admin" {
			t.Errorf("audit %v, want impersonation_denied naming the actor", ev)
		}
	})
	t.Run("with one it is accepted as the policy says", func(t *testing.T) {
		h := bearerHarness(t, func(c *Handler) {
			c.Impersonation = &ImpersonationConfig{Impersonators: []string{"auth0|admin"}, Protect: []string{"auth0|carol"},
				TrustImpersonatorEmail: true}
		})
		r := h.withBearer(h.mint(devidp.AccessTokenOptions{Act: act,
			Claims: map[string]any{"act": map[string]any{"sub": "auth0|admin", "email": "admin@example.com"}}}))
		e, ok := r.echo()
		if r.status != http.StatusOK || !ok {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for name, want := range map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "true",
			"X-Forwarded-Impersonator": "auth0|admin", "X-Forwarded-Impersonator-Email": "admin@example.com"} {
			if got := e.Headers.Get(name); got != want {
				t.Errorf("upstream %s = %q, want %q", name, got, want)
			}
		}
		if ev, ok := h.lastEvent(evImpersonationStarted); !ok || ev["impersonator"] != "auth0|admin" || ev["reason"] != "bearer token" {
			t.Errorf("audit %v", ev)
		}
		r = h.withBearer(h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|mallory"}}))
		if r.status != http.StatusForbidden {
			t.Errorf("an actor the policy does not list: %d", r.status)
		}
		r = h.withBearer(h.mint(devidp.AccessTokenOptions{Subject: "auth0|carol", Act: act}))
		if r.status != http.StatusForbidden {
			t.Errorf("a protected subject: %d", r.status)
		}
		// Impersonation the route's claims mode reads (auto: Auth0's too) is impersonation by
		// token as well: under the same policy, never taken for the user's own token.
		auth0Claims := func(who string) map[string]any {
			return map[string]any{"impersonated": true, "impersonator": map[string]any{"user_id": who}}
		}
		r = h.withBearer(h.mint(devidp.AccessTokenOptions{Claims: auth0Claims("auth0|mallory")}))
		if r.status != http.StatusForbidden {
			t.Errorf("Auth0 impersonation claims naming an actor the policy does not list: %d", r.status)
		}
		e, _ = h.withBearer(h.mint(devidp.AccessTokenOptions{Claims: auth0Claims("auth0|admin")})).echo()
		if e.Headers.Get("X-Forwarded-Impersonated") != "true" || e.Headers.Get("X-Forwarded-Impersonator") != "auth0|admin" {
			t.Errorf("Auth0 impersonation claims naming a listed actor: %v", e.Headers)
		}
	})
}

func TestTokensOfTheProvidersGrantsAreAccepted(t *testing.T) {
	h := bearerHarness(t, nil)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID},
		"client_secret": {testClientSecret}, "audience": {testAPI}, "scope": {"read:reports"}}
	resp, err := http.PostForm(h.idpURL+"oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, err)
	}
	r := h.withBearer(tok.AccessToken)
	e, ok := r.echo()
	if r.status != http.StatusOK || !ok || e.Headers.Get("X-Forwarded-User") != testClientID+"@clients" {
		t.Fatalf("a machine client's token: %d %s", r.status, r.body)
	}
}

func TestBearerCaddyfile(t *testing.T) {
	h := newCaddyfileHarness(t, `
	route /api/* {
		`+oidcBlock(`bearer only {
			audience `+testAPI+`
			clock_skew 1m
		}
		allow {
			scopes read:reports
		}
		headers {
			scopes X-Scopes
		}`)+`
		reverse_proxy $UPSTREAM
	}
	respond "open"`, nil)
	now := h.clock.Now()
	r := h.withBearer(h.mint(devidp.AccessTokenOptions{Scope: "read:reports", IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-50 * time.Second)}))
	e, ok := r.echo()
	if r.status != http.StatusOK || !ok || e.Headers.Get("X-Scopes") != "read:reports" {
		t.Fatalf("a token within the one-minute skew: %d %s", r.status, r.body)
	}
	wantBearerRefused(t, h, h.withBearer(h.mint(devidp.AccessTokenOptions{})), http.StatusForbidden, "insufficient_scope")
	if r := h.browse("/api/x"); r.status != http.StatusUnauthorized {
		t.Errorf("bearer only: a navigation got %d", r.status)
	}
}

func TestTheVerifiedTokenIsTheAuthorizationTheAppGets(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) { c.Headers = &HeadersConfig{AccessToken: "Authorization"} })
	tok := h.mint(devidp.AccessTokenOptions{})
	e, ok := h.withBearer(tok).echo()
	if !ok || len(e.Headers.Values("Authorization")) != 1 || e.Headers.Get("Authorization") != "Bearer "+tok {
		t.Errorf("upstream Authorization %q, want the verified token", e.Headers.Values("Authorization"))
	}
	// A session's request carrying its own Authorization does not pass it on: the header is
	// the module's.
	h.login("alice")
	r := h.api(http.MethodGet, "/x", "Authorization", "Basic YTpi")
	e, ok = r.echo()
	if r.status != http.StatusOK || !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatalf("a session's request with Basic credentials: %d %s", r.status, r.body)
	}
	if got := e.Headers.Values("Authorization"); len(got) != 0 {
		t.Errorf("a client's Authorization reached the app: %q", got)
	}
}

// A machine client's request carries an assertion too, with the token's actor as act, so the
// app verifies API callers and browsers alike.
func TestABearerRequestCarriesTheAssertionWithItsActor(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) {
		withAssertion(AssertionConfig{})(c)
		c.Impersonation = &ImpersonationConfig{Impersonators: []string{"auth0|admin"}}
	})
	r := h.withBearer(h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|admin"},
		Claims: map[string]any{"email": "alice@example.com", "email_verified": true}}))
	e, ok := r.echo()
	if r.status != http.StatusOK || !ok {
		t.Fatalf("%d %s", r.status, r.body)
	}
	c := h.verifyAssertion(h.assertionOf(e), h.siteURL, h.siteURL)
	if c.Sub != "auth0|alice" || c.Email != "alice@example.com" || c.Act == nil || c.Act.Sub != "auth0|admin" {
		t.Errorf("the assertion of an impersonating token: %+v act %+v", c, c.Act)
	}
	e, _ = h.withBearer(h.mint(devidp.AccessTokenOptions{Subject: "svc@clients"})).echo()
	if c := h.verifyAssertion(h.assertionOf(e), h.siteURL, h.siteURL); c.Sub != "svc@clients" || c.Act != nil {
		t.Errorf("the assertion of a machine client's token: %+v", c)
	}
}

// Revoking a subject's sessions revokes the bearer tokens of that subject already in use: each
// is registered as a session at its first use.
func TestRevokingASubjectRevokesItsBearerTokens(t *testing.T) {
	h := newHarness(t, func(c *Handler) { c.Bearer = &BearerConfig{Audience: testAPI} }, nil)
	alice, bob := h.mint(devidp.AccessTokenOptions{}), h.mint(devidp.AccessTokenOptions{Subject: "auth0|bob"})
	for _, tok := range []string{alice, bob} {
		if r := h.withBearer(tok); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	revokeSubject(t, "auth0|alice")
	r := h.withBearer(alice)
	wantBearerRefused(t, h, r, http.StatusUnauthorized, "invalid_token")
	if ev, ok := h.lastEvent(evSessionRejected); !ok || ev["reason"] != "bearer token: revoked" || ev["subject"] != "auth0|alice" {
		t.Errorf("audit %v", ev)
	}
	if r := h.withBearer(bob); r.status != http.StatusOK {
		t.Errorf("another subject's token after the revocation: %d", r.status)
	}
}

// An API client asks who it is at the userinfo endpoint with its token, as a browser does with
// its session: the same checks, the same answer.
func TestUserinfoAnswersForABearerToken(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) {
		c.Impersonation = &ImpersonationConfig{Impersonators: []string{"auth0|admin"}}
	})
	r := h.api(http.MethodGet, "/oauth2/userinfo", "Authorization", "Bearer "+h.mint(devidp.AccessTokenOptions{
		Act: &devidp.Actor{Sub: "auth0|admin"}, Claims: map[string]any{"email": "alice@example.com", "email_verified": true}}))
	var info userinfo
	if err := json.Unmarshal([]byte(r.body), &info); err != nil || r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if info.Sub != "auth0|alice" || info.Email != "alice@example.com" || !info.Impersonated || info.Impersonator == nil ||
		info.Impersonator.ID != "auth0|admin" || info.TokenAudience != testAPI {
		t.Errorf("userinfo %+v", info)
	}
	wantBearerRefused(t, h, h.api(http.MethodGet, "/oauth2/userinfo", "Authorization", "Bearer not-a-token"),
		http.StatusUnauthorized, "invalid_token")
}
