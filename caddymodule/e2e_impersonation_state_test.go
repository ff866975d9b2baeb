package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// The state policy of unsolicited impersonation responses: fixed and signed (any is the default
// the other impersonation tests run with).

func TestImpersonationStateFixed(t *testing.T) {
	const fixed = "fixed-state-value-0123456789"
	h := newHarness(t, withImpersonation(&ImpersonationConfig{State: "fixed", StateValue: fixed}), nil)
	for _, c := range []struct{ name, state string }{{"a wrong state", "fixed-state-value-0123456780"}, {"no state", ""}} {
		t.Run(c.name+" is refused", func(t *testing.T) {
			res := h.browse(h.impLink("alice", "admin", impParams{State: c.state}))
			if res.status != http.StatusForbidden {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "state does not match the fixed value"})
			h.impNoSession()
		})
	}
	t.Run("tokens, which never carry a state, are refused", func(t *testing.T) {
		res := h.impRelayFragment(h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"})))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "fixed value"})
	})
	t.Run("the fixed state is accepted", func(t *testing.T) {
		impWantHeaders(t, h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{State: fixed}))), aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
}

func TestImpersonationStateSigned(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{State: "signed"}), nil)
	mint := func(h *harness) string {
		t.Helper()
		res := h.api(http.MethodGet, "/oauth2/impersonation/state")
		var m struct {
			State     string `json:"state"`
			ExpiresAt int64  `json:"expires_at"`
		}
		if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &m) != nil || m.State == "" {
			t.Fatalf("minting a state: %d %s", res.status, res.body)
		}
		return m.State
	}

	t.Run("minting needs a session", func(t *testing.T) {
		if res := h.api(http.MethodGet, "/oauth2/impersonation/state"); res.status != http.StatusUnauthorized {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	h.login("admin")
	state := mint(h)
	t.Run("a state minted by the admin signs the admin's impersonation in", func(t *testing.T) {
		e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{State: state})))
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("the same state used twice is refused", func(t *testing.T) {
		res := h.browse(h.impLink("bob", "admin", impParams{State: state}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "signed state already used"})
	})
	t.Run("a state minted by one admin is refused for another", func(t *testing.T) {
		admin := h.impOtherBrowser()
		admin.login("admin")
		s := mint(admin)
		res := admin.browse(h.impLink("alice", "mallory", impParams{State: s}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "minted for another impersonator",
			"subject": "auth0|alice", "impersonator": "auth0|mallory"})
	})
	t.Run("an unsigned or forged state is refused", func(t *testing.T) {
		for _, s := range []string{"", "anything", "i." + base64.RawURLEncoding.EncodeToString(make([]byte, 44))} {
			res := h.impOtherBrowser().browse(h.impLink("alice", "admin", impParams{State: s}))
			if res.status != http.StatusForbidden {
				t.Errorf("state %q: %d", s, res.status)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "not a signed impersonation state"})
		}
	})
	t.Run("an expired signed state is refused", func(t *testing.T) {
		admin := h.impOtherBrowser()
		admin.login("admin")
		s := mint(admin)
		h.clock.Advance(signedStateTTL + time.Minute)
		res := admin.browse(h.impLink("alice", "admin", impParams{State: s}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "signed state expired"})
	})
}
