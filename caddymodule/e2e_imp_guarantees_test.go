package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// What a confirmation, a signed state or posted tokens still vouch for when the world has
// changed under them: a sign-out, a configuration that no longer admits the impersonation, a
// restart that emptied the in-memory store.

// signOut signs the browser out from the site's own page, without following the redirect
// to the provider.
func (h *harness) signOut() {
	h.t.Helper()
	if resp := h.ownPost("/oauth2/logout"); resp.StatusCode != http.StatusFound {
		h.t.Fatalf("signing out: %d", resp.StatusCode)
	}
}

func TestImpersonationSignOutClearsWhatIsPending(t *testing.T) {
	t.Run("Continue after signing out is refused, and signs nobody in", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		h.login("admin")
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		h.signOut()
		res := h.impDecide(token, "continue")
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Impersonation not confirmed") {
			t.Fatalf("Continue after signing out: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "confirmation cookie missing"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
	})

	t.Run("a login in progress does not complete after signing out", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		h.login("alice")
		res := h.noRedirectsGet("/oauth2/start?rd=/")
		authorize := res.header.Get("Location")
		if res.status != http.StatusFound || !strings.HasPrefix(authorize, h.idpURL) {
			t.Fatalf("starting a login: %d to %q", res.status, authorize)
		}
		h.signOut()
		for _, name := range h.cookieNames() {
			if strings.HasPrefix(name, h.handler.jar.AttemptPrefix()) {
				t.Errorf("the attempt cookie %s outlived the sign-out", name)
			}
		}
		logins := h.audit.FilterMessage(evLogin).Len()
		if res := h.browse(authorize); res.status == http.StatusOK {
			if _, ok := res.echo(); ok {
				t.Error("the login begun before signing out signed the browser in")
			}
		}
		if h.audit.FilterMessage(evLogin).Len() != logins {
			t.Error("a login was completed")
		}
		h.impNoSession()
	})
}

func TestImpersonationContinueAsksThePolicyAgain(t *testing.T) {
	start := &ImpersonationConfig{Impersonators: []string{"auth0|admin"}}
	for _, c := range []struct {
		name   string
		now    *ImpersonationConfig
		allow  *AllowConfig
		reason string // "" wants Continue to sign in
	}{
		{name: "a reload that no longer lists the admin refuses Continue",
			now: &ImpersonationConfig{Impersonators: []string{"auth0|mallory"}}, reason: "impersonator not allowed"},
		{name: "a reload that protects the target refuses Continue",
			now:    &ImpersonationConfig{Impersonators: []string{"auth0|admin"}, Protect: []string{"auth0|alice"}},
			reason: "target is protected"},
		{name: "a reload whose allow rules no longer admit the target refuses Continue", now: start,
			allow: &AllowConfig{Groups: []string{"admins"}}, reason: "target not admitted"},
		{name: "a reload that changes nothing lets Continue sign in", now: start},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, withImpersonation(start), nil)
			page := h.browse(h.impLink("alice", "admin", impParams{}))
			token := impConfirmToken(t, page)
			h.reload(func(hc *Handler) { hc.Impersonation, hc.Allow = c.now, c.allow })
			// The old server closed its connections: a POST on one of them would fail, not retry.
			h.client.CloseIdleConnections()
			res := h.impDecide(token, "continue")
			if c.reason == "" {
				e, ok := res.echo()
				if !ok {
					t.Fatalf("Continue: %d %.300s", res.status, res.body)
				}
				impWantHeaders(t, e, aliceAsAdmin)
				h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
				return
			}
			if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
				t.Fatalf("Continue: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": c.reason,
				"subject": "auth0|alice", "impersonator": "auth0|admin"})
			h.impNoEvent(evImpersonationConfirmed)
			h.impNoEvent(evImpersonationStarted)
			h.impNoSession()
		})
	}
}

// restart stops Caddy and starts it again with cfg, a clock's few seconds later: the
// in-memory store is a new one, which remembers nothing of what was used before.
func (h *harness) restart(cfg func(*Handler)) {
	h.t.Helper()
	before := h.handler.store
	h.clock.Advance(3 * time.Second)
	if err := caddy.Stop(); err != nil {
		h.t.Fatalf("stopping Caddy: %v", err)
	}
	h.loadSite(cfg)
	if h.handler.store == before {
		h.t.Fatal("the restart kept the store")
	}
	h.client.CloseIdleConnections()
}

// mintState mints a signed impersonation state as the browser's signed-in admin.
func (h *harness) mintState() string {
	h.t.Helper()
	res := h.api(http.MethodGet, "/oauth2/impersonation/state")
	var m struct {
		State string `json:"state"`
	}
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &m) != nil || m.State == "" {
		h.t.Fatalf("minting a state: %d %s", res.status, res.body)
	}
	return m.State
}

func TestImpersonationReplaysAfterARestartAreRefused(t *testing.T) {
	cases := []struct {
		name string
		imp  ImpersonationConfig
		// obtain gets the thing in h's browser, and returns how to use it.
		obtain  func(h *harness) (use func() result)
		refused int
		reason  string
		// who the refusal names: a state is judged before anyone is known
		subject, impersonator string
	}{
		{name: "a fragment's token pair", imp: ImpersonationConfig{Confirm: boolPtr(false)},
			obtain: func(h *harness) func() result {
				f := h.impFragment("alice", "admin")
				return func() result { return h.postForm("/oauth2/callback", f) }
			}, refused: http.StatusForbidden, reason: "ID token older than the store's memory",
			subject: "auth0|alice", impersonator: "auth0|admin"},
		{name: "a confirmation page's cookie and token", imp: ImpersonationConfig{},
			obtain: func(h *harness) func() result {
				token := impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))
				return func() result { return h.impDecide(token, "continue") }
			}, refused: http.StatusBadRequest, reason: "confirmation older than the store's memory",
			subject: "auth0|alice", impersonator: "auth0|admin"},
		{name: "a signed state", imp: ImpersonationConfig{Confirm: boolPtr(false), State: "signed"},
			obtain: func(h *harness) func() result {
				h.login("admin")
				state := h.mintState()
				return func() result { return h.browse(h.impLink("alice", "admin", impParams{State: state})) }
			}, refused: http.StatusForbidden, reason: "signed state older than the store's memory"},
	}
	for _, c := range cases {
		cfg := withImpersonation(&c.imp)
		t.Run("after a restart, "+c.name+" obtained before it is refused", func(t *testing.T) {
			h := newHarness(t, cfg, nil)
			use := c.obtain(h)
			h.restart(cfg)
			res := use()
			if res.status != c.refused {
				t.Fatalf("after the restart: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": c.reason,
				"subject": c.subject, "impersonator": c.impersonator})
			h.impNoEvent(evImpersonationStarted)
			if ui := h.api(http.MethodGet, "/oauth2/userinfo"); strings.Contains(ui.body, `"impersonated":true`) {
				t.Errorf("an impersonated session after the refusal: %s", ui.body)
			}
		})
		t.Run("without a restart, "+c.name+" used as long after is accepted", func(t *testing.T) {
			h := newHarness(t, cfg, nil)
			use := c.obtain(h)
			h.clock.Advance(3 * time.Second)
			res := use()
			e, ok := res.echo()
			if !ok {
				t.Fatalf("without a restart: %d %.300s", res.status, res.body)
			}
			impWantHeaders(t, e, aliceAsAdmin)
			h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		})
	}
}
