package caddymodule

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The confirmation page: what it shows, and the one-time token that Continue and Cancel carry.

func TestImpersonationConfirmation(t *testing.T) {
	t.Run("the page names the target and the impersonator, escaped, and cannot be framed", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), func(c *devidp.Config) {
			c.Users = append(devidp.DemoUsers(),
				devidp.User{Key: "eve", ID: "auth0|eve", Email: `eve<b>bold</b>@example.com`, EmailVerified: true, Nickname: "eve"},
				devidp.User{Key: "root", ID: "auth0|root", Email: `root"&<script>alert(1)</script>@example.com`, EmailVerified: true, Admin: true})
		})
		page := h.browse(h.impLink("eve", "root", impParams{Scope: "openid email"}))
		impConfirmToken(t, page)
		for _, raw := range []string{"<b>bold</b>", "<script>alert(1)</script>", `root"&`} {
			if strings.Contains(page.body, raw) {
				t.Errorf("the page shows %q unescaped", raw)
			}
		}
		for _, escaped := range []string{
			`<strong id="target">eve&lt;b&gt;bold&lt;/b&gt;@example.com</strong>`,
			// Auth0 vouches for no impersonator email: the ID names them, the email is marked.
			`<strong id="impersonator">auth0|root</strong> <span id="impersonator-unverified">(email root&#34;&amp;&lt;script&gt;alert(1)&lt;/script&gt;@example.com, not verified)</span>`,
			`<title>Confirm impersonation</title>`,
			`<strong>` + strings.TrimPrefix(h.siteURL, "http://") + `</strong>`,
		} {
			if !strings.Contains(page.body, escaped) {
				t.Errorf("the page lacks %s:\n%s", escaped, page.body)
			}
		}
		if got := page.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("X-Frame-Options %q", got)
		}
		if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q allows framing", csp)
		}
		if cc := page.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
		if res := h.browse("/oauth2/confirm"); res.status != http.StatusMethodNotAllowed {
			t.Errorf("GET /oauth2/confirm: %d", res.status)
		}
	})

	t.Run("a POST without the token is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.postForm("/oauth2/confirm", url.Values{"decision": {"continue"}}, "Origin", h.siteURL)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Impersonation not confirmed") {
			t.Errorf("%d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "token does not match",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
	})

	t.Run("a wrong token is refused, and the confirmation is gone", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		if res := h.impDecide(token+"x", "continue"); res.status != http.StatusBadRequest {
			t.Errorf("wrong token: %d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "token does not match",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		if res := h.impDecide(token, "continue"); res.status != http.StatusBadRequest {
			t.Errorf("the right token after a wrong guess: %d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "cookie missing"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
	})

	t.Run("a token from another origin is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.postForm("/oauth2/confirm", url.Values{"token": {token}, "decision": {"continue"}},
			"Origin", "https://evil.example")
		if res.status != http.StatusBadRequest {
			t.Errorf("%d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "another origin"})
		h.impNoSession()
	})

	t.Run("Continue issues the session once; replaying the token is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		page := h.browse(h.impLink("alice", "admin", impParams{}))
		site, _ := url.Parse(h.siteURL)
		var confirmCookie *http.Cookie
		for _, c := range h.client.Jar.Cookies(site) {
			if c.Name == "_oidc_auth_confirm" {
				confirmCookie = &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"}
			}
		}
		if confirmCookie == nil {
			t.Fatalf("no confirmation cookie: %v", h.cookieNames())
		}
		token := impConfirmToken(t, page)
		impWantHeaders(t, h.impConfirm(page), aliceAsAdmin)
		h.impAudit(evImpersonationConfirmed, aliceAsAdminEvent)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		if slices.Contains(h.cookieNames(), "_oidc_auth_confirm") {
			t.Error("the confirmation cookie outlived its use")
		}

		// Another browser that copied the cookie and the token replays them.
		other := h.impOtherBrowser()
		other.client.Jar.SetCookies(site, []*http.Cookie{confirmCookie})
		started := h.audit.FilterMessage(evImpersonationStarted).Len()
		if res := other.impDecide(token, "continue"); res.status != http.StatusBadRequest {
			t.Errorf("replayed confirmation: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "already used",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		if h.audit.FilterMessage(evImpersonationStarted).Len() != started {
			t.Error("the replayed confirmation started a session")
		}
		other.impNoSession()
	})

	t.Run("Cancel leaves no session", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.impDecide(token, "cancel")
		if res.status != http.StatusOK || !strings.Contains(res.body, "Impersonation cancelled") {
			t.Errorf("cancel: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "cancelled",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoEvent(evImpersonationConfirmed)
		h.impNoSession()
		if slices.Contains(h.cookieNames(), "_oidc_auth") {
			t.Errorf("a session cookie after Cancel: %v", h.cookieNames())
		}
	})

	t.Run("confirm false issues the session directly", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		res := h.browse(h.impLink("alice", "admin", impParams{}))
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		h.impNoEvent(evImpersonationConfirmed)
	})
}
