package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// Who can spend the site's budget of calls to the provider, and who can be refused for it.

// startAttempt begins a login in h's browser without visiting the provider, and returns its
// state and the provider's authorization URL.
func (h *harness) startAttempt() (state, authorize string) {
	h.t.Helper()
	res := h.noRedirectsGet("/")
	loc, err := url.Parse(res.header.Get("Location"))
	if res.status != http.StatusFound || err != nil || loc.Query().Get("state") == "" {
		h.t.Fatalf("starting a login: %d to %q", res.status, res.header.Get("Location"))
	}
	return loc.Query().Get("state"), loc.String()
}

func TestUnsolicitedCallbacksAreLimitedPerClient(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
	refused := 0
	for i := 0; i < callbackBurst+5; i++ {
		if res := h.browse("/oauth2/callback?code=junk" + strconv.Itoa(i)); res.status == http.StatusTooManyRequests {
			refused++
			if res.header.Get("Retry-After") != "3" {
				t.Errorf("Retry-After %q", res.header.Get("Retry-After"))
			}
		}
	}
	if refused != 5 {
		t.Errorf("%d of %d forged callbacks refused with 429, want 5", refused, callbackBurst+5)
	}
	h.impAudit(evLoginFailed, map[string]string{"reason": "too many unsolicited callbacks from this client"})
	if e := h.login("bob"); e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
		t.Errorf("an ordinary login from the same client after the flood: %v", e.Headers)
	}
}

func TestABusyOfficeSignsInWithoutRefusals(t *testing.T) {
	h := newHarness(t, nil, nil)
	// Sixty people behind one address, in the same second.
	for i := 0; i < 60; i++ {
		if e := h.impOtherBrowser().login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("login %d: %v", i+1, e.Headers)
		}
	}
	if _, ok := h.lastEvent(evLoginFailed); ok {
		t.Errorf("a login failed: %v", h.events())
	}
}

func TestALoginAttemptIsUsedOnce(t *testing.T) {
	h := newHarness(t, nil, nil)
	state, authorize := h.startAttempt()
	site, _ := url.Parse(h.siteURL)
	attemptCookies := h.client.Jar.Cookies(site)
	if e, ok := h.browse(authorize).echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatalf("the first login: %v", e.Headers)
	}
	// The attempt's cookie, put back, with another code: the provider must not be asked. It
	// would answer 500 now, so a replay reaching it would show as "code exchange failed".
	h.tokenStatus.Store(http.StatusInternalServerError)
	for _, c := range attemptCookies {
		h.client.Jar.SetCookies(site, []*http.Cookie{c})
	}
	res := h.browse("/oauth2/callback?code=another-code&state=" + url.QueryEscape(state))
	if res.status != http.StatusBadRequest {
		t.Fatalf("replaying an attempt: %d", res.status)
	}
	h.impAudit(evLoginFailed, map[string]string{"reason": "login attempt already used"})
}

func TestABrowsersOwnFailedLoginsAreLimited(t *testing.T) {
	h := newHarness(t, nil, nil)
	for i := 0; i < callbackBurst; i++ {
		state, _ := h.startAttempt()
		if res := h.browse("/oauth2/callback?code=forged&state=" + url.QueryEscape(state)); res.status != http.StatusBadRequest {
			t.Fatalf("forged code %d with an attempt of its own: %d", i+1, res.status)
		}
	}
	state, _ := h.startAttempt()
	if res := h.browse("/oauth2/callback?code=forged&state=" + url.QueryEscape(state)); res.status != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", callbackBurst, res.status)
	}
	h.impAudit(evLoginFailed, map[string]string{"reason": "too many failed sign-ins from this client"})
	// The budget refills: one failure's worth every callbackRefill.
	h.clock.Advance(callbackRefill)
	if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Errorf("a login once the budget refilled: %v", e.Headers)
	}
}
