package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Impersonation arrives in every way a provider sends it: a one-time link's code or tokens, in
// the query, a form post or the fragment; a solicited login in the Keycloak, act and Auth0
// styles; Auth0's namespaced ID token claims.

func TestImpersonationLinkResponseTypesAndModes(t *testing.T) {
	cases := []struct {
		name   string
		params impParams
		// deliver takes the browser from the link to our site's answer to the callback.
		deliver func(h *harness, link string) result
	}{
		{"a code in the query, with the link's state", impParams{ResponseType: "code", State: "from-the-admin-tool"},
			func(h *harness, link string) result { return h.browse(link) }},
		{"a code in a form post", impParams{ResponseType: "code", ResponseMode: "form_post", State: "st"},
			func(h *harness, link string) result { return h.impSubmitFormPost(h.browse(link)) }},
		{"tokens in a form post", impParams{ResponseType: "token", ResponseMode: "form_post"},
			func(h *harness, link string) result { return h.impSubmitFormPost(h.browse(link)) }},
		{"tokens in the fragment, relayed by the callback's page", impParams{ResponseType: "token"},
			func(h *harness, link string) result { return h.impRelayFragment(h.impCallback(link)) }},
	}
	for _, c := range cases {
		t.Run(c.name+" signs in as the user after confirmation", func(t *testing.T) {
			h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
			page := c.deliver(h, h.impLink("alice", "admin", c.params))
			h.impNoEvent(evImpersonationStarted) // not before the confirmation
			e := h.impConfirm(page)
			impWantHeaders(t, e, aliceAsAdmin)
			if e.Path != "/" {
				t.Errorf("landed on %q, want /", e.Path)
			}
			h.impAudit(evImpersonationConfirmed, aliceAsAdminEvent)
			h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
			if ui := h.impUserinfo(); ui["impersonated"] != true || ui["token_audience"] != "userinfo" {
				t.Errorf("userinfo: %v", ui)
			}
			h.impNoEvent(evUnsolicitedBounced)
			h.impNoEvent(evImpersonationDenied)
		})
	}
}

func TestImpersonationInSolicitedLogins(t *testing.T) {
	modes := []struct {
		mode     devidp.Mode
		claims   string
		impEmail string // what the mode tells of the impersonator's email
	}{
		{devidp.ModeKeycloak, "keycloak", ""},
		{devidp.ModeAct, "act", ""},
		{devidp.ModeAuth0, "auth0", "admin@example.com"},
	}
	for _, m := range modes {
		idpMode := func(c *devidp.Config) { c.Mode = m.mode }
		t.Run(string(m.mode)+" style is refused with 403 without an impersonation block", func(t *testing.T) {
			h := newHarness(t, nil, idpMode)
			h.idp.SetAutoLogin("alice", "admin")
			res := h.browse("/")
			if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "impersonation is not enabled",
				"subject": "auth0|alice", "impersonator": "auth0|admin"})
			h.impNoEvent(evLogin)
			h.impNoSession()
			if h.upstream.count() != 0 {
				t.Error("the upstream was reached")
			}
		})
		for _, claims := range []string{"auto", m.claims} {
			t.Run(string(m.mode)+" style is accepted with the block (claims "+claims+")", func(t *testing.T) {
				h := newHarness(t, withImpersonation(&ImpersonationConfig{Claims: claims}), idpMode)
				h.idp.SetAutoLogin("alice", "admin")
				res := h.browse("/")
				e, ok := res.echo()
				if !ok {
					t.Fatalf("%d %.300s", res.status, res.body)
				}
				impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "true",
					"X-Forwarded-Impersonator": "auth0|admin", "X-Forwarded-Impersonator-Email": "",
					"X-Forwarded-Impersonator-Email-Unverified": m.impEmail})
				h.impAudit(evImpersonationStarted, map[string]string{"subject": "auth0|alice",
					"impersonator": "auth0|admin", "impersonator_email": m.impEmail})
				h.impNoEvent(evLogin)
				h.impNoEvent(evImpersonationConfirmed)
			})
		}
		t.Run(string(m.mode)+" style is subject to the policy", func(t *testing.T) {
			h := newHarness(t, withImpersonation(&ImpersonationConfig{Impersonators: []string{"auth0|admin"},
				Protect: []string{"auth0|carol"}}), idpMode)
			h.idp.SetAutoLogin("alice", "mallory")
			if res := h.browse("/"); res.status != http.StatusForbidden {
				t.Fatalf("mallory: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "impersonator not allowed",
				"subject": "auth0|alice", "impersonator": "auth0|mallory"})
			h.idp.SetAutoLogin("carol", "admin")
			if res := h.browse("/"); res.status != http.StatusForbidden {
				t.Fatalf("carol: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "target is protected",
				"subject": "auth0|carol", "impersonator": "auth0|admin"})
			h.impNoSession()
		})
	}
}

// impIDTokenOnlyProvider puts the development provider behind a proxy that removes the
// impersonation claims from /userinfo, like an Auth0 tenant that reports impersonation only
// through namespaced ID token claims added by an Action. It returns the proxy's issuer URL
// and the hook that wires the harness's provider behind it.
func impIDTokenOnlyProvider(t *testing.T) (issuer string, wire func(*devidp.Server)) {
	var idp atomic.Pointer[devidp.Server]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := idp.Load()
		if s == nil {
			http.Error(w, "not wired", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/userinfo" {
			s.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		var c map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &c) != nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		delete(c, "impersonated")
		delete(c, "impersonator")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/", idp.Store
}

func TestImpersonationNamespacedIDTokenClaims(t *testing.T) {
	const ns = "https://example.com/"
	setup := func(t *testing.T, imp *ImpersonationConfig) *harness {
		issuer, wire := impIDTokenOnlyProvider(t)
		h := newHarness(t, func(c *Handler) {
			c.Issuer = issuer
			c.Impersonation = imp
		}, func(c *devidp.Config) {
			c.Issuer = issuer
			c.Namespace = ns
		})
		wire(h.idp)
		h.idpURL = issuer
		return h
	}

	t.Run("an unsolicited response is recognised by the namespaced ID token claims", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{Namespace: ns})
		e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{})))
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("a solicited login is recognised by them too", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{Namespace: ns, Claims: "auth0"})
		h.idp.SetAutoLogin("alice", "admin")
		res := h.browse("/")
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("without the module's namespace the unsolicited response is not trusted", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{})
		res := h.impNavigate(h.impCallback(h.impLink("alice", "admin", impParams{})).String())
		if res.status != http.StatusFound || !strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Fatalf("%d to %q", res.status, res.header.Get("Location"))
		}
		h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "not impersonated", "subject": "auth0|alice"})
		h.impNoSession()
	})
}
