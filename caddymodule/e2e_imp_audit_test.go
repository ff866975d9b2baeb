package caddymodule

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The audit trail of impersonation: every way an impersonated session ends is recorded with
// who it was, and every email an event names says whether it is verified.

// impEventsAfter checks that, of the audit events logged since the first n, want appear in
// this order.
func (h *harness) impEventsAfter(n int, want ...string) {
	h.t.Helper()
	got := h.events()[n:]
	rest := got
	for _, w := range want {
		i := slices.Index(rest, w)
		if i < 0 {
			h.t.Errorf("audit events %v, want %v in this order", got, want)
			return
		}
		rest = rest[i+1:]
	}
}

func TestImpersonationAuditRecordsEveryEndAndEveryEmailsVerification(t *testing.T) {
	aliceEnded := func(reason string) map[string]string {
		return map[string]string{"reason": reason, "subject": "auth0|alice", "impersonator": "auth0|admin",
			"impersonator_email": "admin@example.com"}
	}
	noConfirm := withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)})

	t.Run("an impersonation replaced by a new login is recorded as ended", func(t *testing.T) {
		h := newHarness(t, noConfirm, nil)
		impWantHeaders(t, h.impSignedIn(h.impLink("alice", "admin", impParams{})), aliceAsAdmin)
		n := len(h.events())
		h.idp.SetAutoLogin("bob", "")
		e, ok := h.browse("/oauth2/start?rd=/").echo()
		if !ok || e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
			t.Fatalf("the new login did not land as bob: %v", e.Headers)
		}
		h.impAudit(evImpersonationEnded, aliceEnded("replaced by a new sign-in"))
		h.impEventsAfter(n, evImpersonationEnded, evLogin)
	})

	t.Run("an impersonation replaced by another impersonation is recorded as ended", func(t *testing.T) {
		h := newHarness(t, noConfirm, nil)
		h.impSignedIn(h.impLink("alice", "admin", impParams{}))
		n := len(h.events())
		e := h.impSignedIn(h.impLink("bob", "admin", impParams{}))
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|bob", "X-Forwarded-Impersonator": "auth0|admin"})
		h.impAudit(evImpersonationEnded, aliceEnded("replaced by a new sign-in"))
		h.impAudit(evImpersonationStarted, map[string]string{"subject": "auth0|bob", "impersonator": "auth0|admin"})
		h.impEventsAfter(n, evImpersonationEnded, evImpersonationStarted)
	})

	t.Run("signing out of an impersonation records its end, then the logout", func(t *testing.T) {
		h := newHarness(t, noConfirm, nil)
		h.impSignedIn(h.impLink("alice", "admin", impParams{}))
		n := len(h.events())
		h.signOut()
		h.impAudit(evImpersonationEnded, aliceEnded("signed out"))
		h.impAudit(evLogout, map[string]string{"subject": "auth0|alice", "impersonator": "auth0|admin"})
		h.impEventsAfter(n, evImpersonationEnded, evLogout)
		h.impNoSession()
	})

	t.Run("an impersonation that expired is recorded as ended, with who it was", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Lifetime: durationOf(30 * time.Minute)}), nil)
		h.impSignedIn(h.impLink("alice", "admin", impParams{}))
		h.clock.Advance(31 * time.Minute)
		n := len(h.events())
		if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
			t.Fatalf("after its lifetime: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationEnded, aliceEnded("expired"))
		h.impAudit(evSessionRejected, map[string]string{"reason": "expired", "subject": "auth0|alice",
			"impersonator": "auth0|admin"})
		h.impEventsAfter(n, evImpersonationEnded, evSessionRejected)
		// Once recorded, the cookie is gone: the end is recorded once.
		h.api(http.MethodGet, "/app")
		if got := h.audit.FilterMessage(evImpersonationEnded).Len(); got != 1 {
			t.Errorf("%d impersonation_ended events, want 1", got)
		}
	})

	t.Run("denials say whether the target's and the impersonator's emails are verified", func(t *testing.T) {
		unverified := devidp.User{Key: "unv", ID: "auth0|unv", Email: "unv@example.com"}
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Impersonators: []string{"auth0|admin"}}), withUsers(unverified))
		for _, c := range []struct {
			user, email string
			verified    bool
		}{{"alice", "alice@example.com", true}, {"unv", "unv@example.com", false}} {
			h.impRefused(h.impLink(c.user, "mallory", impParams{Scope: "openid email"}), map[string]string{
				"reason": "impersonator not allowed", "subject": "auth0|" + c.user, "email": c.email,
				"impersonator": "auth0|mallory", "impersonator_email": "mallory@example.net"})
			h.impAuditFlags(evImpersonationDenied, map[string]bool{"email_verified": c.verified,
				"impersonator_email_verified": false})
		}
	})
}
