package caddymodule

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Header spoofing: every managed header — the defaults, a renamed one, one turned off, a
// claim's, the ID token's and Authorization when the access token would use it — forged in
// every spelling, on every endpoint and a protected path, with and without a session. The
// application must never see a client-supplied value, and no page may reflect one.

// advHeaderConfig renames the user header, turns the email header off, and adds headers
// for a claim, the ID token and the access token, with impersonation on.
func advHeaderConfig(c *Handler) {
	c.Headers = &HeadersConfig{User: "X-Remote-User", Email: "off", AccessToken: "Authorization",
		IDToken: "X-Id-Token", Claims: []HeaderClaim{{Claim: "roles", Header: "X-Forwarded-Roles"}}}
	c.Impersonation = &ImpersonationConfig{}
}

// advHeaderNames are the headers advHeaderConfig manages.
var advHeaderNames = slices.Concat(advDefaultHeaders,
	[]string{"X-Remote-User", "Authorization", "X-Id-Token", "X-Forwarded-Roles"})

// What the application must see of alice's own session, and of alice impersonated by
// admin, under advHeaderConfig ("" = absent). The impersonator's email is left out: whether
// Auth0's unverified one is forwarded, and under which header, is the module's choice; that it
// is never a forged one is checked for every header.
var (
	advAliceHeaders = map[string]string{
		"X-Remote-User": "auth0|alice", "X-Forwarded-User": "", "X-Forwarded-Email": "",
		"X-Forwarded-Preferred-Username": "alice", "X-Forwarded-Groups": "staff", "X-Forwarded-Roles": "user",
		"X-Forwarded-Impersonated": "false", "X-Forwarded-Impersonator": "", "X-Forwarded-Impersonator-Email": "",
		"Authorization": "",
	}
	advAliceAsAdminHeaders = map[string]string{
		"X-Remote-User": "auth0|alice", "X-Forwarded-User": "", "X-Forwarded-Email": "",
		"X-Forwarded-Impersonated": "true", "X-Forwarded-Impersonator": "auth0|admin",
		"Authorization": "", "X-Id-Token": "",
	}
)

func advSignIn(user string) func(*harness, *advReq) {
	return func(h *harness, _ *advReq) { h.login(user) }
}

func advSignInImpersonated(h *harness, _ *advReq) { h.advImpersonate() }

// The sites of the spoofing cases: advHeaderConfig, and three variations of it.
var (
	advHeaderSite = advSite{name: "renamed, off and added headers", cfg: advHeaderConfig}
	advDenySite   = advSite{name: "unauthenticated deny", cfg: func(c *Handler) {
		advHeaderConfig(c)
		c.Unauthenticated = "deny"
	}}
	advNoEmailSite = advSite{name: "the email header on, no email scope", cfg: func(c *Handler) {
		advHeaderConfig(c)
		c.Headers.Email, c.Scopes = "", []string{"openid", "profile"}
	}}
	advSignedSite = advSite{name: "state signed", cfg: func(c *Handler) {
		advHeaderConfig(c)
		c.Impersonation.State = "signed"
	}}
)

type advHeaderCase struct {
	name    string
	site    advSite // default advHeaderSite
	setup   func(*harness, *advReq)
	req     advReq
	want    advWant
	headers map[string]string // on a pass-through, what the application sees
	body    string            // a substring the answer carries
}

func TestAdversarialHeaderSpoofing(t *testing.T) {
	post := func(path string) advReq {
		return advReq{method: http.MethodPost, path: path, origin: "self"}
	}
	cases := []advHeaderCase{
		{name: "a protected path, no session, an API call",
			req:  advReq{path: "/app", header: [][2]string{{"Accept", "application/json"}}},
			want: advWant{status: http.StatusUnauthorized}},
		{name: "a protected path, no session, a navigation",
			req: advReq{path: "/app"}, want: advWant{status: http.StatusFound}},
		{name: "a protected path, no session, unauthenticated deny", site: advDenySite,
			req: advReq{path: "/app"}, want: advWant{status: http.StatusUnauthorized}},
		{name: "a protected path with a session", setup: advSignIn("alice"),
			req: advReq{path: "/app"}, want: advWant{status: http.StatusOK, reaches: true}, headers: advAliceHeaders},
		{name: "a protected path with a session, HEAD", setup: advSignIn("alice"),
			req: advReq{method: http.MethodHead, path: "/app"}, want: advWant{status: http.StatusOK, reaches: true},
			headers: advAliceHeaders},
		{name: "a protected path with a session, a form POST", setup: advSignIn("alice"),
			req:  advReq{method: http.MethodPost, path: "/app/form", body: "X-Forwarded-User=" + advForged},
			want: advWant{status: http.StatusOK, reaches: true}, headers: advAliceHeaders},
		{name: "a protected path with an impersonated session", setup: advSignInImpersonated,
			req: advReq{path: "/app"}, want: advWant{status: http.StatusOK, reaches: true}, headers: advAliceAsAdminHeaders},
		{name: "a path under the prefix that is no endpoint, with a session", setup: advSignIn("alice"),
			req: advReq{path: "/oauth2/elsewhere"}, want: advWant{status: http.StatusOK, reaches: true}, headers: advAliceHeaders},
		{name: "Connection naming the managed headers, with a session", setup: advSignIn("alice"),
			req:  advReq{path: "/app", header: [][2]string{{"Connection", "X-Remote-User, x_forwarded_impersonator, X-Forwarded-Roles"}}},
			want: advWant{status: http.StatusOK, reaches: true}, headers: advAliceHeaders},
		{name: "a session without an email, the email header on", site: advNoEmailSite,
			setup: advSignIn("alice"), req: advReq{path: "/app"},
			want: advWant{status: http.StatusOK, reaches: true}, headers: map[string]string{"X-Forwarded-Email": ""}},
		{name: "a session without groups", setup: advSignIn("mallory"), req: advReq{path: "/app"},
			want: advWant{status: http.StatusOK, reaches: true}, headers: map[string]string{"X-Forwarded-Groups": "",
				"X-Forwarded-Roles": "", "X-Remote-User": "auth0|mallory"}},
		{name: "a whole login, the forged headers resent on every redirect",
			req:  advReq{path: "/app", follow: true},
			want: advWant{status: http.StatusOK, events: evLogin, reaches: true}, headers: advAliceHeaders},
		{name: "the callback without parameters (the relay page)",
			req: advReq{path: "/oauth2/callback"}, want: advWant{status: http.StatusOK}, body: `id="relay"`},
		{name: "the callback with a forged code",
			req:  advReq{path: "/oauth2/callback?code=" + advForged},
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "code refused by the provider"}},
		{name: "the callback with a forged code, with a session", setup: advSignIn("alice"),
			req:  advReq{path: "/oauth2/callback?code=" + advForged},
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "code refused by the provider"}},
		{name: "the callback with posted tokens",
			req: advReq{method: http.MethodPost, path: "/oauth2/callback",
				body: url.Values{"id_token": {"a.b.c"}, "access_token": {advForged}}.Encode()},
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "ID token does not verify"}},
		{name: "start", req: advReq{path: "/oauth2/start?rd=/app"}, want: advWant{status: http.StatusFound}},
		{name: "start with a session", setup: advSignIn("alice"),
			req: advReq{path: "/oauth2/start?rd=/app"}, want: advWant{status: http.StatusFound}},
		{name: "logout with a session", setup: advSignIn("alice"),
			req: advReq{path: "/oauth2/logout"}, want: advWant{status: http.StatusFound, events: evLogout}},
		{name: "logout without a session",
			req: advReq{path: "/oauth2/logout"}, want: advWant{status: http.StatusFound}},
		{name: "userinfo without a session",
			req: advReq{path: "/oauth2/userinfo"}, want: advWant{status: http.StatusUnauthorized}},
		{name: "userinfo with a session", setup: advSignIn("alice"),
			req: advReq{path: "/oauth2/userinfo"}, want: advWant{status: http.StatusOK}, body: `"sub":"auth0|alice"`},
		{name: "userinfo with an impersonated session", setup: advSignInImpersonated,
			req: advReq{path: "/oauth2/userinfo"}, want: advWant{status: http.StatusOK}, body: `"impersonator":{"id":"auth0|admin"`},
		{name: "confirm without its cookie", req: post("/oauth2/confirm"),
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "cookie missing"}},
		{name: "confirm, Continue with the right token",
			setup: func(h *harness, r *advReq) {
				r.body = url.Values{"token": {impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))},
					"decision": {"continue"}}.Encode()
			},
			req:  post("/oauth2/confirm"),
			want: advWant{status: http.StatusSeeOther, events: evImpersonationConfirmed + "," + evImpersonationStarted}},
		{name: "impersonation/end with an impersonated session", setup: advSignInImpersonated,
			req: post("/oauth2/impersonation/end"), want: advWant{status: http.StatusSeeOther, events: evImpersonationEnded}},
		{name: "impersonation/end without a session",
			req: post("/oauth2/impersonation/end"), want: advWant{status: http.StatusSeeOther}},
		{name: "impersonation/state with an impersonator's session", site: advSignedSite, setup: advSignIn("admin"),
			req: advReq{path: "/oauth2/impersonation/state"}, want: advWant{status: http.StatusOK}, body: `"state":"i.`},
		{name: "impersonation/state without a session", site: advSignedSite,
			req: advReq{path: "/oauth2/impersonation/state"}, want: advWant{status: http.StatusUnauthorized}},
	}
	advEach(t, cases, func(c advHeaderCase) (advSite, string) {
		if c.site.name == "" {
			return advHeaderSite, c.name
		}
		return c.site, c.name
	}, func(t *testing.T, h *harness, tc advHeaderCase) {
		req := tc.req
		req.header = slices.Concat(advSpoof(advHeaderNames...), req.header)
		if tc.setup != nil {
			tc.setup(h, &req)
		}
		m := h.advMark()
		res := h.advSend(req)
		h.advCheck(m, res, tc.want)
		if tc.headers != nil {
			got := h.upstreamHeaders()
			for name, want := range tc.headers {
				if v := got.Values(name); (want == "" && len(v) != 0) || (want != "" && (len(v) != 1 || v[0] != want)) {
					t.Errorf("the application saw %s %q, want %q", name, v, want)
				}
			}
		}
		if tc.body != "" && !strings.Contains(res.body, tc.body) {
			t.Errorf("the answer lacks %s: %.300s", tc.body, res.body)
		}
	})
}

// Claims are the provider's, but users choose some of them (a nickname, sometimes an email or
// a group name): none may split a header or read as another value in it.
func TestAdversarialClaimsCannotForgeHeaders(t *testing.T) {
	site := advSite{name: "users with crafted claims",
		cfg: func(c *Handler) {
			c.Headers = &HeadersConfig{Claims: []HeaderClaim{{Claim: "roles", Header: "X-Forwarded-Roles"}}}
		},
		idp: func(c *devidp.Config) {
			c.Users = append(devidp.DemoUsers(),
				devidp.User{Key: "eve", ID: "auth0|eve", Email: "eve@example.com\r\nX-Forwarded-Impersonator: auth0|admin",
					EmailVerified: true, Nickname: "eve\r\nX-Forwarded-User: auth0|admin",
					Groups: []string{"staff,admins", "support"}, Roles: []string{"user\nX-Forwarded-Impersonated: true"}},
				devidp.User{Key: "crlf", ID: "auth0|crlf\r\nX-Forwarded-Impersonator: auth0|admin", Email: "crlf@example.com",
					EmailVerified: true, Groups: []string{"admins,", ",admins"}})
		}}
	type claimCase struct {
		user    string
		headers map[string]string
	}
	advEach(t, []claimCase{
		{"eve", map[string]string{
			"X-Forwarded-User":               "auth0|eve",
			"X-Forwarded-Email":              "eve@example.com  X-Forwarded-Impersonator: auth0|admin",
			"X-Forwarded-Preferred-Username": "eve  X-Forwarded-User: auth0|admin",
			"X-Forwarded-Groups":             "support",
			"X-Forwarded-Roles":              "user X-Forwarded-Impersonated: true",
			"X-Forwarded-Impersonated":       "false", "X-Forwarded-Impersonator": ""}},
		{"crlf", map[string]string{
			"X-Forwarded-User":   "auth0|crlf  X-Forwarded-Impersonator: auth0|admin",
			"X-Forwarded-Groups": "", "X-Forwarded-Impersonator": "", "X-Forwarded-Impersonated": "false"}},
	}, func(c claimCase) (advSite, string) { return site, "signed in as " + c.user }, func(t *testing.T, h *harness, c claimCase) {
		h.login(c.user)
		m := h.advMark()
		res := h.advSend(advReq{path: "/app"})
		h.advCheck(m, res, advWant{status: http.StatusOK, reaches: true})
		got := h.upstreamHeaders()
		for name, want := range c.headers {
			if v := got.Values(name); (want == "" && len(v) != 0) || (want != "" && (len(v) != 1 || v[0] != want)) {
				t.Errorf("the application saw %s %q, want %q", name, v, want)
			}
		}
	})
}
