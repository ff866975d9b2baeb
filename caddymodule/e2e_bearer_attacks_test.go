package caddymodule

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Attacks on bearer tokens, each once a hole: the test fails without its fix.

// A token carrying the impersonation the route's claims mode reads (its namespace, its custom
// claims) is impersonation, under the policy: never the target's own token.
func TestBearerImpersonationIsReadAsTheRouteReadsIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    ImpersonationConfig
		claims map[string]any
	}{
		{"custom claim paths", ImpersonationConfig{ImpersonatorIDClaim: "impersonator_sub"},
			map[string]any{"impersonator_sub": "auth0|mallory"}},
		{"auth0 namespaced claims", ImpersonationConfig{Claims: "auth0", Namespace: "https://example.com/"},
			map[string]any{"https://example.com/impersonated": true,
				"https://example.com/impersonator": map[string]any{"user_id": "auth0|mallory"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Impersonators = []string{"auth0|admin"} // mallory is not allowed to impersonate
			cfg.Protect = []string{"auth0|alice"}       // and alice may never be impersonated
			h := bearerHarness(t, func(c *Handler) { c.Impersonation = &cfg })
			r := h.withBearer(h.mint(devidp.AccessTokenOptions{Claims: tc.claims}))
			if e, reached := r.echo(); reached {
				t.Fatalf("impersonation of a protected user by a non-listed impersonator reached the app as alice's own: status %d, X-Forwarded-User=%q X-Forwarded-Impersonated=%q",
					r.status, e.Headers.Get("X-Forwarded-User"), e.Headers.Get("X-Forwarded-Impersonated"))
			}
			if r.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", r.status)
			}
		})
	}
}

// An impersonating token lasts no longer than the impersonation block's lifetime allows a
// session, counted from its iat, whatever its exp says.
func TestAnImpersonatingTokenEndsWithTheImpersonationLifetime(t *testing.T) {
	h := bearerHarness(t, func(c *Handler) {
		c.Impersonation = &ImpersonationConfig{Impersonators: []string{"auth0|admin"}, Lifetime: caddy.Duration(time.Hour)}
	})
	now := h.clock.Now()
	tok := h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|admin"},
		IssuedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)})
	if r := h.withBearer(tok); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	h.clock.Advance(7 * 24 * time.Hour)
	if r := h.withBearer(tok); r.status == http.StatusOK {
		t.Errorf("an impersonated token issued 7 days ago is still accepted under lifetime 1h")
	}
	// A token first seen long after its iat is refused as well.
	old := h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|admin"},
		IssuedAt: h.clock.Now().Add(-48 * time.Hour), ExpiresAt: h.clock.Now().Add(time.Hour)})
	wantBearerRefused(t, h, h.withBearer(old), http.StatusUnauthorized, "invalid_token")
	// Without iat, its age cannot be told: refused.
	noIat := h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|admin"},
		Claims: map[string]any{"iat": nil}})
	wantBearerRefused(t, h, h.withBearer(noIat), http.StatusUnauthorized, "invalid_token")
	if ev, _ := h.lastEvent(evSessionRejected); ev["reason"] != "bearer token: an impersonating token has no iat" {
		t.Errorf("audit %v", ev)
	}
	// Within its lifetime, a token good for longer is kept no longer than the lifetime.
	fresh := h.mint(devidp.AccessTokenOptions{Act: &devidp.Actor{Sub: "auth0|admin"},
		IssuedAt: h.clock.Now(), ExpiresAt: h.clock.Now().Add(24 * time.Hour)})
	if r := h.withBearer(fresh); r.status != http.StatusOK {
		t.Fatalf("a fresh impersonating token: %d %s", r.status, r.body)
	}
	h.clock.Advance(time.Hour)
	wantBearerRefused(t, h, h.withBearer(fresh), http.StatusUnauthorized, "invalid_token")
}

// A time claim that is not a NumericDate (RFC 7519 §2) is refused, not taken for no time.
func TestAMalformedTimeClaimIsRefused(t *testing.T) {
	h := bearerHarness(t, nil)
	future := h.clock.Now().Add(24 * time.Hour).Unix()
	for name, nbf := range map[string]any{
		"nbf as a string":           "9999999999",
		"nbf beyond 1e11":           1e12,
		"nbf as string of tomorrow": time.Unix(future, 0).Format(time.RFC3339),
	} {
		r := h.withBearer(h.mint(devidp.AccessTokenOptions{Claims: map[string]any{"nbf": nbf}}))
		if r.status == http.StatusOK {
			t.Errorf("%s: token not valid yet was accepted", name)
		}
	}
}

// The README's layout: the API under handle /api/* with bearer only, the pages under handle
// with sessions. (oidc_auth orders itself before route, so a site-level oidc_auth would run
// before a route's: each part gets its own handle.)
func TestBearerReadmeLayout(t *testing.T) {
	h := newCaddyfileHarness(t, `
	handle /api/* {
		`+oidcBlock("bearer only {\n\t\t\taudience "+testAPI+"\n\t\t}")+`
		reverse_proxy $UPSTREAM
	}
	handle {
		`+oidcBlock("")+`
		reverse_proxy $UPSTREAM
	}`, nil)
	r := h.withBearer(h.mint(devidp.AccessTokenOptions{}))
	if _, ok := r.echo(); r.status != http.StatusOK || !ok {
		t.Fatalf("a good token on /api/: %d %s (WWW-Authenticate %q)", r.status, r.body, r.header.Get("WWW-Authenticate"))
	}
	if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatalf("a browser on the pages: %v", e.Headers)
	}
	if r := h.api(http.MethodGet, "/api/reports"); r.status != http.StatusUnauthorized {
		t.Errorf("the browser's session on the bearer-only API: %d", r.status)
	}
}

// A Bearer credential the module did not verify never reaches the app beside a session: a tab
// after the scheme, or a Bearer field after another scheme's, is an offer (and refused).
func TestAnUnverifiedBearerNeverReachesTheAppBesideASession(t *testing.T) {
	h := bearerHarness(t, nil)
	forged := h.mint(devidp.AccessTokenOptions{Subject: "auth0|ceo", Unsigned: true})
	h.login("alice")
	for name, hdrs := range map[string][]string{
		"tab after Bearer":           {"Authorization", "Bearer\t" + forged},
		"second Authorization field": {"Authorization", "Basic YTpi", "Authorization", "Bearer " + forged},
	} {
		r := h.api(http.MethodGet, "/api/reports", hdrs...)
		if e, reached := r.echo(); reached {
			t.Errorf("%s: the request reached the app with Authorization %.40q", name, e.Headers.Values("Authorization"))
		}
		if r.status != http.StatusBadRequest && r.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want the offer refused", name, r.status)
		}
	}
}
