package caddymodule

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The impersonated session: the impersonator's own session stashed and restored at
// impersonation/end, and the impersonated session's lifetime.

func TestImpersonationStashAndRestore(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
	impWantHeaders(t, h.login("admin"), map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false"})

	e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{})))
	impWantHeaders(t, e, aliceAsAdmin)
	h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	if !slices.Contains(h.cookieNames(), "_oidc_auth_stash") {
		t.Fatalf("the admin's own session was not stashed: %v", h.cookieNames())
	}
	e, _ = h.browse("/later").echo()
	impWantHeaders(t, e, aliceAsAdmin)

	t.Run("ending from another origin is refused", func(t *testing.T) {
		res := h.postForm("/oauth2/impersonation/end", nil, "Origin", "https://evil.example")
		if res.status != http.StatusForbidden {
			t.Errorf("%d", res.status)
		}
		h.impNoEvent(evImpersonationEnded)
		e, _ := h.browse("/").echo()
		impWantHeaders(t, e, aliceAsAdmin)
	})

	t.Run("ending restores the admin's own session", func(t *testing.T) {
		res := h.postForm("/oauth2/impersonation/end", nil, "Origin", h.siteURL)
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false",
			"X-Forwarded-Impersonator": ""})
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		if slices.Contains(h.cookieNames(), "_oidc_auth_stash") {
			t.Error("the stash outlived the impersonation")
		}
		e, _ = h.browse("/").echo()
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false"})
		if n := h.audit.FilterMessage(evLogin).Len(); n != 1 {
			t.Errorf("%d logins, want the admin's one", n)
		}
	})

	t.Run("without a stash, ending leaves no session", func(t *testing.T) {
		b := h.impOtherBrowser()
		impWantHeaders(t, b.impConfirm(b.browse(h.impLink("alice", "admin", impParams{}))), aliceAsAdmin)
		if slices.Contains(b.cookieNames(), "_oidc_auth_stash") {
			t.Error("a stash without an own session")
		}
		b.impEnd()
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		b.impNoSession()
	})

	t.Run("another user's session is not stashed", func(t *testing.T) {
		b := h.impOtherBrowser()
		b.login("bob")
		impWantHeaders(t, b.impConfirm(b.browse(h.impLink("alice", "admin", impParams{}))), aliceAsAdmin)
		if slices.Contains(b.cookieNames(), "_oidc_auth_stash") {
			t.Error("bob's session was stashed for admin's impersonation")
		}
		b.impEnd()
		b.impNoSession()
	})
}

func TestImpersonationSessionLifetime(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Lifetime: durationOf(30 * time.Minute)}), nil)
	if e, ok := h.browse(h.impLink("alice", "admin", impParams{})).echo(); !ok {
		t.Fatal("the impersonation did not sign in")
	} else {
		impWantHeaders(t, e, aliceAsAdmin)
	}
	if exp, _ := h.impUserinfo()["expires_at"].(float64); time.Unix(int64(exp), 0).After(h.clock.Now().Add(30 * time.Minute)) {
		t.Errorf("the impersonated session expires at %v, after its 30m lifetime", time.Unix(int64(exp), 0))
	}
	h.clock.Advance(29 * time.Minute)
	if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatal("the session ended before its lifetime")
	}
	h.clock.Advance(2 * time.Minute)
	if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
		t.Errorf("after its lifetime: %d %.200s", res.status, res.body)
	}
	h.impAudit(evSessionRejected, map[string]string{"reason": "expired"})
	if res := h.impNavigate(h.siteURL + "/app"); res.status != http.StatusFound ||
		!strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
		t.Errorf("a navigation after the lifetime: %d to %q", res.status, res.header.Get("Location"))
	}
}

func TestImpersonationSessionEndsWithItsToken(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Lifetime: durationOf(time.Hour)}),
		func(c *devidp.Config) { c.AccessTokenTTL = 10 * time.Minute })
	if _, ok := h.impRelayFragment(h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))).echo(); !ok {
		t.Fatal("the impersonation did not sign in")
	}
	h.clock.Advance(9 * time.Minute)
	if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("X-Forwarded-Impersonator") != "auth0|admin" {
		t.Fatal("the session ended before its token")
	}
	h.clock.Advance(2 * time.Minute)
	if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
		t.Errorf("after the token's expiry: %d", res.status)
	}
	h.impAudit(evSessionRejected, map[string]string{"reason": "expired"})
}
