package caddymodule

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// How long an impersonation, and the impersonator's own session put aside for it, last:
// session_lifetime caps the impersonated session too, and a stashed session's idle clock
// runs from the moment it was put aside.

func TestImpersonationSessionLifetimeCapsTheImpersonation(t *testing.T) {
	for _, c := range []struct {
		name string
		imp  ImpersonationConfig
	}{
		{"session_lifetime 1m caps the default impersonation lifetime", ImpersonationConfig{Confirm: boolPtr(false)}},
		{"session_lifetime 1m caps a longer impersonation lifetime", ImpersonationConfig{Confirm: boolPtr(false),
			Lifetime: durationOf(2 * time.Hour)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(h *Handler) {
				h.SessionLifetime = durationOf(time.Minute)
				h.Impersonation = &c.imp
			}, nil)
			impWantHeaders(t, h.impSignedIn(h.impLink("alice", "admin", impParams{})), aliceAsAdmin)
			limit := h.clock.Now().Add(time.Minute)
			if exp, _ := h.impUserinfo()["expires_at"].(float64); exp == 0 || time.Unix(int64(exp), 0).After(limit) {
				t.Errorf("the impersonated session expires at %v, after session_lifetime (%v)", time.Unix(int64(exp), 0), limit)
			}
			h.clock.Advance(time.Minute + time.Second)
			if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
				t.Errorf("after session_lifetime: %d %.200s", res.status, res.body)
			}
		})
	}
}

func TestImpersonationStashIdleClockRunsFromTheStash(t *testing.T) {
	idle := func(c *Handler) {
		c.SessionIdle = durationOf(10 * time.Minute)
		c.Impersonation = &ImpersonationConfig{}
	}
	adminHeaders := map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false"}
	// impersonate signs the signed-in admin in as alice, putting the admin's session aside.
	impersonate := func(t *testing.T, h *harness) {
		t.Helper()
		impWantHeaders(t, h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{}))), aliceAsAdmin)
		if !slices.Contains(h.cookieNames(), "_oidc_auth_stash") {
			t.Fatalf("the admin's own session was not stashed: %v", h.cookieNames())
		}
	}
	// stayActive keeps the impersonated session in use every 5 minutes, for d.
	stayActive := func(t *testing.T, h *harness, d time.Duration) {
		t.Helper()
		for ; d > 0; d -= 5 * time.Minute {
			step := min(d, 5*time.Minute)
			h.clock.Advance(step)
			if e, ok := h.browse("/app").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
				t.Fatalf("the impersonated session ended while in use")
			}
		}
	}

	t.Run("put aside longer than session_idle, the admin's session is not restored", func(t *testing.T) {
		h := newHarness(t, idle, nil)
		impWantHeaders(t, h.login("admin"), adminHeaders)
		impersonate(t, h)
		stayActive(t, h, 11*time.Minute)
		h.impEnd()
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		h.impNoSession()
	})

	t.Run("put aside for less than session_idle, it is restored, however idle it was before", func(t *testing.T) {
		h := newHarness(t, idle, nil)
		impWantHeaders(t, h.login("admin"), adminHeaders)
		// Idle for 9 minutes, still valid when the impersonation begins.
		h.clock.Advance(9 * time.Minute)
		impersonate(t, h)
		stayActive(t, h, 9*time.Minute)
		h.impEnd()
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		if ui := h.impUserinfo(); ui["sub"] != "auth0|admin" || ui["impersonated"] != false {
			t.Errorf("after the end the session is %v, want the admin's own", ui)
		}
		e, ok := h.browse("/").echo()
		if !ok {
			t.Fatal("no landing after the end")
		}
		impWantHeaders(t, e, adminHeaders)
		if n := h.audit.FilterMessage(evLogin).Len(); n != 1 {
			t.Errorf("%d logins: the admin's session came back through a new login, not the stash", n)
		}
	})
}
