package devidp

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestAuthorizeRefusesUnknownClientOrCallbackWithoutRedirect(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name   string
		params map[string]string
	}{
		{"an unknown client_id gets an error page", map[string]string{"client_id": "nope"}},
		{"a missing client_id gets an error page", map[string]string{"client_id": ""}},
		{"a redirect_uri that is not registered gets an error page", map[string]string{"redirect_uri": "https://evil.example/cb"}},
		{"a redirect_uri differing by a slash gets an error page", map[string]string{"redirect_uri": appCallback + "/"}},
		{"a missing redirect_uri gets an error page", map[string]string{"redirect_uri": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.authorize(t, tc.params)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("headers %v", resp.Header)
			}
			if !strings.Contains(body, "error-message") {
				t.Errorf("no error message in %s", body)
			}
		})
	}
}

func TestAuthorizeErrorsGoBackToTheClient(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name     string
		params   map[string]string
		fragment bool
		code     string
	}{
		{"an unsupported response_type is refused in the query",
			map[string]string{"response_type": "id_token"}, false, "unsupported_response_type"},
		{"a missing response_type is refused",
			map[string]string{"response_type": ""}, false, "invalid_request"},
		{"id_token token without openid is refused in the fragment",
			map[string]string{"response_type": "id_token token", "scope": "profile", "nonce": "n"}, true, "invalid_request"},
		{"id_token token without a nonce is refused in the fragment",
			map[string]string{"response_type": "id_token token"}, true, "invalid_request"},
		{"an unknown code_challenge_method is refused",
			map[string]string{"code_challenge": s256(verifier), "code_challenge_method": "S512"}, false, "invalid_request"},
		{"tokens in the query are refused, in the fragment",
			map[string]string{"response_type": "token", "response_mode": "query"}, true, "invalid_request"},
		{"prompt=none without a session answers login_required",
			map[string]string{"prompt": "none"}, false, "login_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := e.authorize(t, tc.params)
			v := e.redirected(t, resp, tc.fragment)
			if v.Get("error") != tc.code || v.Get("error_description") == "" || v.Get("state") != "st-1" {
				t.Errorf("got %v, want error %s with description and state", v, tc.code)
			}
		})
	}
}

var txRE = regexp.MustCompile(`name="tx" value="([^"]+)"`)

func TestLoginPage(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.authorize(t, nil)
	t.Run("it lists every demo user as a button", func(t *testing.T) {
		if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Sign in</h1>") || !strings.Contains(body, "<title>Sign in</title>") {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
		for _, u := range DemoUsers() {
			if !strings.Contains(body, `id="login-`+u.Key+`"`) {
				t.Errorf("no button for %s", u.Key)
			}
		}
		if !strings.Contains(body, `<button type="submit" name="user" value="alice" id="login-alice">Alice Example (alice@example.com)</button>`) {
			t.Errorf("alice's button is not as documented")
		}
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("headers %v", resp.Header)
		}
	})
	m := txRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no tx field")
	}
	resp, _ = e.post(t, e.url("login"), url.Values{"tx": {m[1]}, "user": {"bob"}})
	t.Run("choosing a user completes the authorization with a code and the state", func(t *testing.T) {
		v := e.redirected(t, resp, false)
		if v.Get("code") == "" || v.Get("state") != "st-1" {
			t.Errorf("got %v", v)
		}
	})
	t.Run("it sets an HttpOnly, SameSite=Lax SSO cookie", func(t *testing.T) {
		c := resp.Header.Get("Set-Cookie")
		for _, want := range []string{"devidp_sso=", "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(c, want) {
				t.Errorf("Set-Cookie %q lacks %s", c, want)
			}
		}
	})
	t.Run("the pending authorization cannot be completed twice", func(t *testing.T) {
		resp, _ := e.post(t, e.url("login"), url.Values{"tx": {m[1]}, "user": {"bob"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("the SSO cookie makes the next authorization immediate", func(t *testing.T) {
		resp, _ := e.authorize(t, map[string]string{"state": "st-2"})
		v := e.redirected(t, resp, false)
		if v.Get("code") == "" || v.Get("state") != "st-2" {
			t.Errorf("got %v", v)
		}
		_, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {v.Get("code")}, "redirect_uri": {appCallback}})
		if sub := e.verifyJWT(t, tok["id_token"].(string))["sub"]; sub != "auth0|bob" {
			t.Errorf("sub = %v, want auth0|bob", sub)
		}
	})
	t.Run("prompt=login shows the login page despite the SSO cookie", func(t *testing.T) {
		resp, body := e.authorize(t, map[string]string{"prompt": "login"})
		if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Sign in</h1>") {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("an expired pending authorization cannot be completed", func(t *testing.T) {
		_, body := e.authorize(t, map[string]string{"prompt": "login"})
		tx := txRE.FindStringSubmatch(body)[1]
		e.clock.Add(pendingTTL + 1)
		resp, _ := e.post(t, e.url("login"), url.Values{"tx": {tx}, "user": {"bob"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestImplicitFlows(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.SetAutoLogin("alice", "")
	t.Run("response_type token puts an access token in the fragment, without an ID token", func(t *testing.T) {
		resp, _ := e.authorize(t, map[string]string{"response_type": "token"})
		v := e.redirected(t, resp, true)
		if v.Get("access_token") == "" || v.Get("token_type") != "Bearer" || v.Get("expires_in") != "86400" ||
			v.Get("state") != "st-1" || v.Get("scope") != "openid profile email" || v.Has("id_token") {
			t.Errorf("got %v", v)
		}
		if status, info := e.userinfo(t, v.Get("access_token")); status != 200 || info["sub"] != "auth0|alice" {
			t.Errorf("userinfo %d %v", status, info)
		}
	})
	t.Run("response_type id_token token adds an ID token with the nonce and at_hash", func(t *testing.T) {
		resp, _ := e.authorize(t, map[string]string{"response_type": "token id_token", "nonce": "n-9"})
		v := e.redirected(t, resp, true)
		claims := e.verifyJWT(t, v.Get("id_token"))
		if claims["nonce"] != "n-9" || claims["at_hash"] != halfHash(v.Get("access_token")) || v.Get("state") != "st-1" {
			t.Errorf("fragment %v, claims %v", v, claims)
		}
	})
	t.Run("form_post answers a page that posts the fields, escaped", func(t *testing.T) {
		resp, body := e.authorize(t, map[string]string{"response_mode": "form_post", "state": `"><script>alert(1)</script>`})
		if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
		}
		for _, want := range []string{`<form method="post" action="` + appCallback + `"`, `name="code" value="`,
			`name="state" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`, `<button type="submit">`} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s:\n%s", want, body)
			}
		}
		if strings.Contains(body, "<script>alert") {
			t.Error("state is not escaped")
		}
	})
}

func TestAutoLogin(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("an unknown auto-login user gets an error page", func(t *testing.T) {
		e.idp.SetAutoLogin("nobody", "")
		resp, _ := e.authorize(t, nil)
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("turning it off shows the login page again", func(t *testing.T) {
		e.idp.SetAutoLogin("", "")
		resp, body := e.authorize(t, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Sign in</h1>") {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("a browser's SSO session comes first, unless prompt=login", func(t *testing.T) {
		e := newEnv(t, nil)
		e.signIn(t, "bob")
		e.idp.SetAutoLogin("alice", "")
		for prompt, want := range map[string]string{"": "auth0|bob", "login": "auth0|alice"} {
			resp, _ := e.authorize(t, map[string]string{"response_type": "token", "prompt": prompt})
			if _, info := e.userinfo(t, e.redirected(t, resp, true).Get("access_token")); info["sub"] != want {
				t.Errorf("prompt %q: sub %v, want %s", prompt, info["sub"], want)
			}
		}
	})
	t.Run("an impersonated auto-login gets no refresh token, even with offline_access", func(t *testing.T) {
		code := e.pkceCode(t, map[string]string{"scope": "openid offline_access"})
		e.idp.SetAutoLogin("alice", "admin")
		defer e.idp.SetAutoLogin("", "")
		resp, _ := e.authorize(t, map[string]string{"scope": "openid offline_access"})
		impCode := e.redirected(t, resp, false).Get("code")
		for c, want := range map[string]bool{code: true, impCode: false} {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {appCallback}, "code_verifier": {verifier}}
			if _, tok := e.exchange(t, form); (tok["refresh_token"] != nil) != want {
				t.Errorf("refresh token %v, want one: %v", tok["refresh_token"], want)
			}
		}
	})
	t.Run("a user ID works as well as a key", func(t *testing.T) {
		e.idp.SetAutoLogin("auth0|carol", "")
		resp, _ := e.authorize(t, map[string]string{"response_type": "token"})
		_, info := e.userinfo(t, e.redirected(t, resp, true).Get("access_token"))
		if info["sub"] != "auth0|carol" || info["email"] != "ceo@example.com" {
			t.Errorf("userinfo %v", info)
		}
	})
}
