// Tests of token exchange (RFC 8693): the subject stays the subject, the actor goes in act.

package devidp

import (
	"net/url"
	"reflect"
	"testing"
	"time"
)

func TestTokenExchange(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "spa", RedirectURIs: []string{"https://spa.example.test/cb"}})
	})
	accessTokenOf := func(user string, params map[string]string) string {
		e.idp.SetAutoLogin(user, "")
		defer e.idp.SetAutoLogin("", "")
		p := map[string]string{"response_type": "token"}
		for k, v := range params {
			p[k] = v
		}
		resp, _ := e.authorize(t, p)
		return e.redirected(t, resp, true).Get("access_token")
	}
	alice := accessTokenOf("alice", map[string]string{"audience": "https://api.example.com"})
	admin := accessTokenOf("admin", nil) // opaque
	exchange := func(t *testing.T, form url.Values) (int, map[string]any) {
		t.Helper()
		f := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "audience": {"https://backend.example.com"}}
		for k, v := range form {
			f[k] = v
		}
		return e.exchange(t, f)
	}
	typed := func(kind, subject, actor string) url.Values {
		v := url.Values{"subject_token": {subject}, "subject_token_type": {"urn:ietf:params:oauth:token-type:" + kind}}
		if actor != "" {
			v.Set("actor_token", actor)
			v.Set("actor_token_type", "urn:ietf:params:oauth:token-type:access_token")
		}
		return v
	}
	t.Run("a subject and an actor token give a JWT for the subject with act naming the actor", func(t *testing.T) {
		status, m := exchange(t, typed("access_token", alice, admin))
		if status != 200 || m["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || m["token_type"] != "Bearer" {
			t.Fatalf("got %d %v", status, m)
		}
		tok := m["access_token"].(string)
		c := e.verifyJWT(t, tok)
		want := map[string]any{"iss": e.srv.URL + "/", "sub": "auth0|alice", "aud": "https://backend.example.com",
			"azp": appID, "client_id": appID, "scope": "openid profile email", "act": map[string]any{"sub": "auth0|admin"}}
		for k, v := range want {
			if !reflect.DeepEqual(c[k], v) {
				t.Errorf("%s = %v, want %v", k, c[k], v)
			}
		}
		if h, _, _ := jwtParts(t, tok); h["typ"] != "at+jwt" {
			t.Errorf("header %v", h)
		}
	})
	t.Run("an earlier actor is nested under the new one", func(t *testing.T) {
		delegated, _ := e.idp.MintAccessToken(AccessTokenOptions{Subject: "auth0|alice", Act: &Actor{Sub: "svc-a"}})
		_, m := exchange(t, typed("jwt", delegated, admin))
		c := e.verifyJWT(t, m["access_token"].(string))
		if want := map[string]any{"sub": "auth0|admin", "act": map[string]any{"sub": "svc-a"}}; !reflect.DeepEqual(c["act"], want) {
			t.Errorf("act %v", c["act"])
		}
	})
	t.Run("without an actor token there is no act, and an ID token can be the subject", func(t *testing.T) {
		id := e.implicitTokens(t).Get("id_token")
		status, m := exchange(t, typed("id_token", id, ""))
		if status != 200 {
			t.Fatalf("got %d %v", status, m)
		}
		if c := e.verifyJWT(t, m["access_token"].(string)); c["sub"] != "auth0|alice" || c["act"] != nil {
			t.Errorf("claims %v", c)
		}
	})
	t.Run("an impersonated login's token keeps its impersonator as actor", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice", ResponseType: "token"}))
		at := e.redirected(t, resp, true).Get("access_token")
		_, m := exchange(t, typed("access_token", at, ""))
		if c := e.verifyJWT(t, m["access_token"].(string)); !reflect.DeepEqual(c["act"], map[string]any{"sub": "auth0|admin"}) {
			t.Errorf("claims %v", c)
		}
	})
	expired, _ := e.idp.MintAccessToken(AccessTokenOptions{Subject: "auth0|alice", ExpiresAt: e.clock.Now().Add(-time.Second)})
	foreign, _ := e.idp.MintAccessToken(AccessTokenOptions{Subject: "auth0|alice", Issuer: WrongIssuer})
	unsigned, _ := e.idp.MintAccessToken(AccessTokenOptions{Subject: "auth0|alice", Unsigned: true})
	for _, tc := range []struct {
		name string
		form url.Values
		err  string
	}{
		{"a garbage subject token is invalid_request", typed("access_token", "garbage", ""), "invalid_request"},
		{"an expired subject token is invalid_request", typed("jwt", expired, ""), "invalid_request"},
		{"another issuer's token is invalid_request", typed("jwt", foreign, ""), "invalid_request"},
		{"an unsigned token is invalid_request", typed("jwt", unsigned, ""), "invalid_request"},
		{"an unsupported token type is invalid_request", typed("saml2", alice, ""), "invalid_request"},
		{"a bad actor token is invalid_request", typed("access_token", alice, "garbage"), "invalid_request"},
		{"an actor token without its type is invalid_request",
			url.Values{"subject_token": {alice}, "subject_token_type": {tokenTypeAccess}, "actor_token": {admin}}, "invalid_request"},
		{"a missing audience is invalid_request",
			url.Values{"subject_token": {alice}, "subject_token_type": {tokenTypeAccess}, "audience": {""}}, "invalid_request"},
		{"a public client may not exchange",
			url.Values{"subject_token": {alice}, "subject_token_type": {tokenTypeAccess}, "client_id": {"spa"}}, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, m := exchange(t, tc.form); status != 400 || m["error"] != tc.err {
				t.Errorf("got %d %v", status, m)
			}
		})
	}
}
