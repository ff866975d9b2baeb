package caddymodule

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func TestOrdinaryLogin(t *testing.T) {
	h := newHarness(t, nil, nil)
	e := h.login("alice")
	for header, want := range map[string]string{
		"X-Forwarded-User":               "auth0|alice",
		"X-Forwarded-Email":              "alice@example.com",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Groups":             "staff",
		"X-Forwarded-Impersonated":       "false",
	} {
		if got := e.Headers.Get(header); got != want {
			t.Errorf("upstream saw %s = %q, want %q", header, got, want)
		}
	}
	if got := e.Headers.Get("Cookie"); strings.Contains(got, "_oidc_auth") {
		t.Errorf("upstream saw the module's cookies: %q", got)
	}
	if ev, ok := h.lastEvent(evLogin); !ok || ev["subject"] != "auth0|alice" || ev["session_id"] == "" {
		t.Errorf("no login audit event for alice: %v", h.events())
	}
	for _, name := range h.cookieNames() {
		if strings.Contains(name, "_att_") {
			t.Errorf("attempt cookie %s left behind after the login", name)
		}
	}

	t.Run("the session works for later requests without another login", func(t *testing.T) {
		before := h.audit.FilterMessage(evLogin).Len()
		res := h.browse("/some/page?x=1")
		e, ok := res.echo()
		if !ok || e.Path != "/some/page?x=1" || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("second request: %d %s", res.status, res.body)
		}
		if after := h.audit.FilterMessage(evLogin).Len(); after != before {
			t.Errorf("a second login happened")
		}
	})
	t.Run("userinfo answers the identity as JSON", func(t *testing.T) {
		res := h.api(http.MethodGet, "/oauth2/userinfo")
		if res.status != 200 || !strings.Contains(res.body, `"sub":"auth0|alice"`) || !strings.Contains(res.body, `"impersonated":false`) {
			t.Errorf("userinfo: %d %s", res.status, res.body)
		}
	})
	t.Run("logout clears the session and ends the provider's", func(t *testing.T) {
		res := h.noRedirectsGet("/oauth2/logout?rd=/bye")
		loc := res.header.Get("Location")
		if res.status != http.StatusFound || !strings.HasPrefix(loc, h.idpURL+"oidc/logout?") ||
			!strings.Contains(loc, url.QueryEscape(h.siteURL+"/bye")) {
			t.Fatalf("logout: %d to %q", res.status, loc)
		}
		if _, ok := h.lastEvent(evLogout); !ok {
			t.Error("no logout audit event")
		}
		if res := h.api(http.MethodGet, "/oauth2/userinfo"); res.status != http.StatusUnauthorized {
			t.Errorf("userinfo after logout: %d", res.status)
		}
	})
}

// noRedirectsGet is a browser navigation that stops at the first response.
func (h *harness) noRedirectsGet(path string) result {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.siteURL+path, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return result{status: resp.StatusCode, header: resp.Header, url: resp.Request.URL}
}

func TestUnauthenticatedRequests(t *testing.T) {
	h := newHarness(t, nil, nil)
	cases := []struct {
		name    string
		method  string
		headers []string
	}{
		{"an API call", http.MethodGet, []string{"Accept", "application/json"}},
		{"a fetch from a page", http.MethodGet, []string{"Accept", "text/html", "Sec-Fetch-Mode", "cors"}},
		{"an XMLHttpRequest", http.MethodGet, []string{"Accept", "text/html", "X-Requested-With", "XMLHttpRequest"}},
		{"a POST", http.MethodPost, []string{"Accept", "text/html"}},
	}
	for _, c := range cases {
		t.Run(c.name+" gets 401, not a redirect", func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.siteURL+"/api/thing", nil)
			for i := 0; i < len(c.headers); i += 2 {
				req.Header.Set(c.headers[i], c.headers[i+1])
			}
			resp, err := h.noRedirects().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
		})
	}
	t.Run("the 401 for an API call is JSON", func(t *testing.T) {
		res := h.api(http.MethodGet, "/api/thing")
		if !strings.Contains(res.header.Get("Content-Type"), "application/json") || !strings.Contains(res.body, `"error":"unauthenticated"`) {
			t.Errorf("got %s: %s", res.header.Get("Content-Type"), res.body)
		}
		if h.upstream.count() != 0 {
			t.Error("an unauthenticated request reached the upstream")
		}
	})
	t.Run("a browser navigation goes to the provider with state, nonce and PKCE", func(t *testing.T) {
		res := h.noRedirectsGet("/deep/link?q=1")
		u, err := url.Parse(res.header.Get("Location"))
		if res.status != http.StatusFound || err != nil {
			t.Fatalf("%d %v", res.status, err)
		}
		q := u.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
			len(q.Get("state")) != stateLen || q.Get("redirect_uri") != h.siteURL+"/oauth2/callback" {
			t.Errorf("authorize URL lacks a protection: %s", u)
		}
	})
}

func TestUnauthenticatedDeny(t *testing.T) {
	h := newHarness(t, func(c *Handler) { c.Unauthenticated = "deny" }, nil)
	res := h.noRedirectsGet("/")
	if res.status != http.StatusUnauthorized {
		t.Errorf("a browser navigation got %d with unauthenticated deny, want 401", res.status)
	}
}

func TestSpoofedIdentityHeadersNeverReachTheUpstream(t *testing.T) {
	h := newHarness(t, func(c *Handler) {
		c.Headers = &HeadersConfig{Claims: []HeaderClaim{{Claim: "roles", Header: "X-Roles"}}}
		c.Unauthenticated = "redirect"
	}, nil)
	spoof := []string{
		"X-Forwarded-User", "mallory",
		"x-forwarded-email", "ceo@example.com",
		"X_Forwarded_Impersonator", "auth0|ceo",
		"X-FORWARDED-GROUPS", "admins",
		"X-Forwarded-Groups", "admins2",
		"X-Roles", "admin",
		"X-Forwarded-Impersonated", "true",
	}
	h.login("alice")
	res := h.browse("/", spoof...)
	e, ok := res.echo()
	if !ok {
		t.Fatalf("%d %s", res.status, res.body)
	}
	want := map[string]string{
		"X-Forwarded-User": "auth0|alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "staff",
		"X-Forwarded-Impersonated": "false", "X-Roles": "user",
	}
	for name, vals := range e.Headers {
		if w, managed := want[name]; managed && (len(vals) != 1 || vals[0] != w) {
			t.Errorf("upstream saw %s = %q, want only %q", name, vals, w)
		}
		if strings.Contains(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "impersonator") {
			t.Errorf("a spoofed %s reached the upstream: %q", name, vals)
		}
	}
}

func TestAllowPolicyDeniesWith403(t *testing.T) {
	h := newHarness(t, func(c *Handler) {
		c.Allow = &AllowConfig{Domains: []string{"example.com"}, Expression: `"support" in claims.groups`}
	}, nil)
	h.idp.SetAutoLogin("alice", "")
	res := h.browse("/")
	if res.status != http.StatusForbidden || !strings.Contains(res.body, "does not admit your account") {
		t.Fatalf("alice (not in support): %d %.200s", res.status, res.body)
	}
	if ev, ok := h.lastEvent(evLoginFailed); !ok || ev["reason"] != "expression denied" {
		t.Errorf("login_failed event: %v", ev)
	}
	if e := h.login("bob"); e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
		t.Errorf("bob should be admitted: %v", e.Headers)
	}
}

func TestCallbackFailures(t *testing.T) {
	h := newHarness(t, nil, nil)
	t.Run("a provider error answering our login is shown escaped", func(t *testing.T) {
		loc, _ := url.Parse(h.noRedirectsGet("/").header.Get("Location"))
		res := h.browse("/oauth2/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E&state=" +
			url.QueryEscape(loc.Query().Get("state")))
		if res.status != http.StatusForbidden || strings.Contains(res.body, "<script>alert") ||
			!strings.Contains(res.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("an error no login of ours asked for shows no text of the sender's", func(t *testing.T) {
		res := h.browse("/oauth2/callback?error=access_denied&error_description=Call+0800+SUPPORT+now")
		if res.status != http.StatusForbidden || strings.Contains(res.body, "SUPPORT") || !strings.Contains(res.body, "access_denied") {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("our state without its attempt cookie gets the could-not-complete page, not a loop", func(t *testing.T) {
		state, _ := h.handler.states.mintLogin(h.clock.Now())
		res := h.browse("/oauth2/callback?code=abc&state=" + state)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "cookies may be blocked") ||
			!strings.Contains(res.body, `href="/oauth2/start?rd=%2F"`) {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("an expired attempt is refused", func(t *testing.T) {
		state, _ := h.handler.states.mintLogin(h.clock.Now().Add(-attemptTTL - time.Minute))
		res := h.browse("/oauth2/callback?code=abc&state=" + state)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "expired") {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("an oversized parameter is refused with 400", func(t *testing.T) {
		res := h.browse("/oauth2/callback?code=" + strings.Repeat("a", maxParamLen+1) + "&state=x")
		if res.status != http.StatusBadRequest {
			t.Errorf("%d", res.status)
		}
	})
	t.Run("a garbage session cookie is no session, cleared, and audited", func(t *testing.T) {
		u, _ := url.Parse(h.siteURL)
		h.client.Jar.SetCookies(u, []*http.Cookie{{Name: "_oidc_auth", Value: "garbage!!", Path: "/"}})
		res := h.api(http.MethodGet, "/")
		if res.status != http.StatusUnauthorized {
			t.Errorf("%d", res.status)
		}
		if ev, ok := h.lastEvent(evSessionRejected); !ok || ev["reason"] != "does not open" {
			t.Errorf("session_rejected: %v", ev)
		}
	})
	t.Run("a tokens-only response to our own state is refused", func(t *testing.T) {
		res := h.noRedirectsGet("/")
		loc, _ := url.Parse(res.header.Get("Location"))
		state := loc.Query().Get("state")
		res = h.postForm("/oauth2/callback", url.Values{"state": {state}, "id_token": {"x.y.z"}, "access_token": {"t"}})
		if res.status != http.StatusBadRequest {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
}

func TestAttemptCookiesAreBounded(t *testing.T) {
	h := newHarness(t, nil, nil)
	for i := 0; i < 10; i++ {
		h.noRedirectsGet("/tab")
	}
	n := 0
	for _, name := range h.cookieNames() {
		if strings.Contains(name, "_att_") {
			n++
		}
	}
	if n == 0 || n > maxAttempts {
		t.Errorf("%d attempt cookies after 10 parallel logins, want 1..%d", n, maxAttempts)
	}
}

func TestRefreshRenewsTheForwardedToken(t *testing.T) {
	h := newHarness(t, func(c *Handler) {
		c.Refresh = true
		c.Scopes = []string{"openid", "profile", "email", "offline_access"}
		c.Audience = "https://api.example.com"
		c.Headers = &HeadersConfig{AccessToken: "Authorization"}
	}, func(c *devidp.Config) { c.AccessTokenTTL = 10 * time.Minute })
	first := h.login("alice").Headers.Get("Authorization")
	if !strings.HasPrefix(first, "Bearer ey") {
		t.Fatalf("no JWT access token forwarded: %q", first)
	}
	h.clock.Advance(9*time.Minute + 30*time.Second)
	res := h.browse("/")
	e, ok := res.echo()
	if !ok {
		t.Fatalf("after expiry: %d %s", res.status, res.body)
	}
	second := e.Headers.Get("Authorization")
	if second == first || !strings.HasPrefix(second, "Bearer ey") {
		t.Errorf("token not renewed: %q", second)
	}
	h.clock.Advance(9 * time.Minute)
	if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("Authorization") == second {
		t.Errorf("second renewal failed")
	}
}

func TestProviderDownAtStartThenUp(t *testing.T) {
	h := newHarness(t, nil, nil)
	addr := h.idpSrv.Listener.Addr().String()
	h.idpSrv.Close()

	res := h.browse("/")
	if res.status != http.StatusBadGateway || !strings.Contains(res.body, "unreachable") {
		t.Fatalf("with the provider down: %d %.200s", res.status, res.body)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on the provider's address again: %v", err)
	}
	srv := &http.Server{Handler: h.idp}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.clock.Advance(discoveryRetry)

	if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Errorf("login after the provider came up: %v", e.Headers)
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, func(c *Handler) {
		c.SessionLifetime = durationOf(time.Hour)
		c.SessionIdle = durationOf(10 * time.Minute)
	}, nil)
	h.login("alice")
	h.clock.Advance(8 * time.Minute)
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Fatalf("active session refused: %d", res.status)
	}
	h.clock.Advance(8 * time.Minute) // 8 minutes since the last use: still within idle
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Fatalf("session refused within the idle timeout: %d", res.status)
	}
	h.clock.Advance(11 * time.Minute)
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("idle session accepted: %d", res.status)
	}
	h.login("alice")
	for i := 1; i <= 7; i++ {
		h.clock.Advance(9 * time.Minute)
		res := h.api(http.MethodGet, "/")
		if alive := i*9 < 60; alive != (res.status == http.StatusOK) {
			t.Errorf("after %d minutes of steady use: %d", i*9, res.status)
		}
	}
}
