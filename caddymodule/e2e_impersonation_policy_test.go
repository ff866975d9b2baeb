package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Who may impersonate whom: without the block, for a response that is not impersonated, and
// under the impersonators, protect and expression rules.

func TestImpersonationRefusedWithoutTheBlockIsBounced(t *testing.T) {
	h := newHarness(t, nil, nil)
	loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "from-the-admin-tool"}))
	res := h.impNavigate(loc.String())
	to, _ := url.Parse(res.header.Get("Location"))
	if res.status != http.StatusFound || !strings.HasPrefix(to.String(), h.idpURL+"authorize?") {
		t.Fatalf("the unsolicited response was not bounced to the provider: %d to %q", res.status, to)
	}
	if q := to.Query(); len(q.Get("state")) != stateLen || q.Get("nonce") == "" || q.Get("code_challenge") == "" {
		t.Errorf("the bounce is not an ordinary login: %s", to)
	}
	h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "impersonation is not enabled",
		"subject": "", "impersonator": ""})
	h.impNoEvent(evImpersonationStarted)
	h.impNoSecretsLogged(loc.Query().Get("code"))
	h.impNoSession()

	// The fresh login is the browser's own (alice, at the provider), never the impersonation.
	e, ok := h.browse(to.String()).echo()
	if !ok {
		t.Fatal("the fresh login did not land")
	}
	impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "false",
		"X-Forwarded-Impersonator": ""})
	h.impAudit(evLogin, map[string]string{"subject": "auth0|alice", "impersonator": ""})
}

func TestImpersonationRefusesANonImpersonatedUnsolicitedResponse(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Landing: "/home"}), nil)
	// An attacker's own ordinary code, obtained with a state of their choosing, delivered to
	// the victim's browser (login CSRF).
	h.idp.SetAutoLogin("bob", "")
	q := url.Values{"client_id": {testClientID}, "redirect_uri": {h.siteURL + "/oauth2/callback"},
		"response_type": {"code"}, "scope": {"openid profile email"}, "state": {"attacker-chosen-state"}}
	res := h.impNavigate(h.idpURL + "authorize?" + q.Encode())
	loc := res.header.Get("Location")
	if res.status != http.StatusFound || !strings.HasPrefix(loc, h.siteURL+"/oauth2/callback?code=") {
		t.Fatalf("crafting a code: %d %q", res.status, loc)
	}
	h.idp.SetAutoLogin("alice", "")

	res = h.impNavigate(loc)
	to, _ := url.Parse(res.header.Get("Location"))
	if res.status != http.StatusFound || !strings.HasPrefix(to.String(), h.idpURL+"authorize?") {
		t.Fatalf("not bounced: %d to %q %.200s", res.status, to, res.body)
	}
	h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "not impersonated", "subject": "auth0|bob",
		"impersonator": ""})
	h.impNoSession()
	e, ok := h.browse(to.String()).echo()
	if !ok || e.Path != "/home" {
		t.Fatalf("the fresh login did not land on /home: %v", e)
	}
	impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "false"})
}

func TestImpersonationPolicyRefusals(t *testing.T) {
	cases := []struct {
		name        string
		policy      *ImpersonationConfig
		user, imp   string
		scope       string
		reason      string
		allowedUser string // a control: this user, impersonated by admin, gets to the confirmation page
	}{
		{name: "an impersonator who is not on the list",
			policy: &ImpersonationConfig{Impersonators: []string{"auth0|admin"}},
			user:   "alice", imp: "mallory", reason: "impersonator not allowed", allowedUser: "alice"},
		{name: "a protected target, known by the email scope",
			policy: &ImpersonationConfig{Protect: []string{"ceo@example.com"}},
			user:   "carol", imp: "admin", scope: "openid email", reason: "target is protected", allowedUser: "alice"},
		{name: "a protected target, whose email the default scope does not reveal",
			policy: &ImpersonationConfig{Protect: []string{"ceo@example.com"}},
			user:   "carol", imp: "admin", reason: "protect", allowedUser: "alice"},
		{name: "a protected domain",
			policy: &ImpersonationConfig{Protect: []string{"EXAMPLE.com"}},
			user:   "bob", imp: "admin", scope: "openid profile email", reason: "target is protected"},
		{name: "an expression that says no",
			policy: &ImpersonationConfig{TrustImpersonatorEmail: true,
				Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`},
			user: "alice", imp: "mallory", reason: "expression denied", allowedUser: "alice"},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused with 403", func(t *testing.T) {
			h := newHarness(t, withImpersonation(c.policy), nil)
			res := h.browse(h.impLink(c.user, c.imp, impParams{Scope: c.scope}))
			if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			if strings.Contains(res.body, `id="continue"`) {
				t.Error("a refused impersonation reached the confirmation page")
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": c.reason,
				"subject": "auth0|" + c.user, "impersonator": "auth0|" + c.imp})
			h.impNoEvent(evImpersonationStarted)
			h.impNoSession()
			if h.upstream.count() != 0 {
				t.Error("the upstream was reached")
			}
			if c.allowedUser != "" {
				impConfirmToken(t, h.browse(h.impLink(c.allowedUser, "admin", impParams{Scope: "openid email"})))
			}
		})
	}
}
