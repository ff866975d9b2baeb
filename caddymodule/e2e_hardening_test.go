package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Tests of attacks on the unsolicited path found in review: posted tokens that are not one
// sign-in's own, and a bounce from a form post.

// impFragment mints a response-type-token link and returns its fragment's fields.
func (h *harness) impFragment(user, impersonator string) url.Values {
	h.t.Helper()
	loc := h.impCallback(h.impLink(user, impersonator, impParams{ResponseType: "token", Scope: "openid profile email"}))
	fields, err := url.ParseQuery(loc.EscapedFragment())
	if err != nil || fields.Get("access_token") == "" || fields.Get("id_token") == "" {
		h.t.Fatalf("no tokens in %s", loc.Redacted())
	}
	return fields
}

func TestUnsolicitedPostedTokensMustBeOneSignInsOwn(t *testing.T) {
	t.Run("an access token alone, without an ID token, is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		f := h.impFragment("alice", "admin")
		res := h.postForm("/oauth2/callback", url.Values{"access_token": {f.Get("access_token")}, "token_type": {"Bearer"}})
		if res.status != http.StatusForbidden {
			t.Fatalf("access token alone: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "no ID token"})
		h.impNoSession()
	})
	t.Run("an ID token with another sign-in's access token is refused (at_hash)", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		first, second := h.impFragment("alice", "admin"), h.impFragment("alice", "admin")
		res := h.postForm("/oauth2/callback", url.Values{
			"id_token": {first.Get("id_token")}, "access_token": {second.Get("access_token")}, "token_type": {"Bearer"},
		})
		if res.status != http.StatusForbidden {
			t.Fatalf("mixed tokens: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "at_hash"})
		h.impNoSession()
		// Nothing of a refused response is remembered: the genuine pair still works.
		if _, ok := h.postForm("/oauth2/callback", second).echo(); !ok {
			t.Error("the genuine response was refused after a forged one used its access token")
		}
	})
}

func TestABounceFromAFormPostContinuesWithAPageOfItsOwn(t *testing.T) {
	// The relay page's CSP (form-action 'self') would block a redirect to the provider that
	// answered its form post, so the bounce must be a new navigation.
	h := newHarness(t, nil, nil)
	h.impLink("alice", "admin", impParams{}) // the provider accepts the client
	f := url.Values{"access_token": {"x"}, "id_token": {"y.z.w"}}
	req, _ := http.NewRequest(http.MethodPost, h.siteURL+"/oauth2/callback", strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Refresh") != "0; url=/oauth2/start?rd=%2F" {
		t.Fatalf("bounce of a form post: %d, Location %q, Refresh %q", resp.StatusCode,
			resp.Header.Get("Location"), resp.Header.Get("Refresh"))
	}
	h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "impersonation is not enabled"})
}

func TestAnUnverifiedEmailIsNeverPassedOnAsIdentity(t *testing.T) {
	h := newHarness(t, nil, func(c *devidp.Config) {
		users := devidp.DemoUsers()
		for i := range users {
			if users[i].Key == "alice" {
				users[i].Email, users[i].EmailVerified = "ceo@example.com", false
			}
		}
		c.Users = users
	})
	e := h.login("alice")
	if got := e.Headers.Get("X-Forwarded-Email"); got != "" {
		t.Errorf("an unverified email reached the upstream: %q", got)
	}
	if got := e.Headers.Get("X-Forwarded-User"); got != "auth0|alice" {
		t.Errorf("user %q", got)
	}
	res := h.api(http.MethodGet, "/oauth2/userinfo")
	if !strings.Contains(res.body, `"email":""`) {
		t.Errorf("userinfo shows an unverified email: %s", res.body)
	}
}

func TestEndingAnImpersonationRestoresOnlyTheImpersonatorsOwnSession(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
	h.login("bob")
	// A stash cookie holding bob's session, as a cookie planted from a sibling host could be.
	bob := h.impSession()
	bob.Expires = h.clock.Now().Add(time.Hour)
	u, _ := url.Parse(h.siteURL)
	sealed := h.handler.sealer.Seal(session.PurposeStash, bob.Marshal(), bob.Expires)
	loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "s", Scope: "openid profile email"}))
	if e, ok := h.browse(loc.String()).echo(); !ok || e.Headers.Get("X-Forwarded-Impersonator") != "auth0|admin" {
		t.Fatalf("impersonation did not start: %v", e.Headers)
	}
	h.client.Jar.SetCookies(u, []*http.Cookie{{Name: h.handler.jar.StashName(), Value: sealed, Path: "/"}})
	h.impEnd()
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("a stash that is not the impersonator's came back as the session: %d %s", res.status, res.body)
	}
}

func TestARenewedSessionCookieIsMarkedPrivate(t *testing.T) {
	h := newHarness(t, func(c *Handler) { c.SessionIdle = durationOf(10 * time.Minute) }, nil)
	h.login("alice")
	h.clock.Advance(5 * time.Minute)
	res := h.api(http.MethodGet, "/")
	if res.status != http.StatusOK || len(res.header.Values("Set-Cookie")) == 0 {
		t.Fatalf("the idle clock was not renewed: %d %v", res.status, res.header)
	}
	if cc := res.header.Values("Cache-Control"); len(cc) == 0 || cc[0] != "private" {
		t.Errorf("Cache-Control %q on a response carrying a session cookie", cc)
	}
}

func TestProviderErrorTextIsShownOnlyToTheBrowserThatStartedTheLogin(t *testing.T) {
	h := newHarness(t, nil, nil)
	loc, _ := url.Parse(h.noRedirectsGet("/").header.Get("Location"))
	crafted := "/oauth2/callback?error=access_denied&error_description=Call+0800+SUPPORT&state=" +
		url.QueryEscape(loc.Query().Get("state"))
	// An attacker's own state, valid but not this browser's attempt.
	if res := h.impOtherBrowser().browse(crafted); strings.Contains(res.body, "SUPPORT") {
		t.Errorf("another browser's state carried the text onto the page: %s", res.body)
	}
	if res := h.browse(crafted); !strings.Contains(res.body, "Call 0800 SUPPORT") {
		t.Errorf("the browser that started the login does not see the provider's description: %s", res.body)
	}
	if res := h.browse("/oauth2/callback?error=Your+account+is+locked"); strings.Contains(res.body, "locked") ||
		!strings.Contains(res.body, "unknown_error") {
		t.Errorf("a non-standard error code was shown: %s", res.body)
	}
}
