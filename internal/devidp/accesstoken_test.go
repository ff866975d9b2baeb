// Tests of machine clients (client_credentials) and of MintAccessToken.

package devidp

import (
	"net/url"
	"reflect"
	"testing"
	"time"
)

func TestClientCredentialsGrant(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "spa", RedirectURIs: []string{"https://spa.example.test/cb"}})
	})
	now := e.clock.Now().Unix()
	for _, basic := range []bool{false, true} {
		name := "client_secret_post"
		if basic {
			name = "client_secret_basic"
		}
		t.Run("a machine client authenticated with "+name+" gets a JWT for the audience", func(t *testing.T) {
			status, tok := e.tokenRequest(t, url.Values{"grant_type": {"client_credentials"},
				"audience": {"https://api.example.com"}, "scope": {"read:things"}}, basic)
			if status != 200 || tok["token_type"] != "Bearer" || tok["expires_in"] != float64(86400) ||
				tok["id_token"] != nil || tok["refresh_token"] != nil || tok["scope"] != "read:things" {
				t.Fatalf("got %d %v", status, tok)
			}
			at := tok["access_token"].(string)
			c := e.verifyJWT(t, at)
			want := map[string]any{"iss": e.srv.URL + "/", "sub": appID + "@clients", "aud": "https://api.example.com",
				"azp": appID, "client_id": appID, "gty": "client-credentials", "scope": "read:things",
				"iat": float64(now), "exp": float64(now + 86400)}
			for k, v := range want {
				if !reflect.DeepEqual(c[k], v) {
					t.Errorf("%s = %v, want %v", k, c[k], v)
				}
			}
			if h, _, _ := jwtParts(t, at); h["typ"] != "at+jwt" || c["jti"] == nil {
				t.Errorf("header %v claims %v", h, c)
			}
			if status, _ := e.userinfo(t, at); status != 401 {
				t.Errorf("userinfo accepted a token without a user: %d", status)
			}
		})
	}
	t.Run("without an audience it is refused as Auth0 does", func(t *testing.T) {
		status, m := e.exchange(t, url.Values{"grant_type": {"client_credentials"}})
		if status != 403 || m["error"] != "access_denied" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("a public client may not use it", func(t *testing.T) {
		status, m := e.exchange(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"},
			"audience": {"https://api.example.com"}})
		if status != 400 || m["error"] != "unauthorized_client" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("a wrong secret is invalid_client", func(t *testing.T) {
		status, m := e.exchange(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {appID},
			"client_secret": {"wrong"}, "audience": {"https://api.example.com"}})
		if status != 401 || m["error"] != "invalid_client" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("discovery lists the grant", func(t *testing.T) {
		if g, _ := e.discovery(t)["grant_types_supported"].([]any); !containsAny(g, "client_credentials") {
			t.Errorf("grant_types_supported %v", g)
		}
	})
}

func TestMintAccessToken(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	mint := func(t *testing.T, o AccessTokenOptions) string {
		t.Helper()
		tok, err := e.idp.MintAccessToken(o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("a chosen token verifies and carries what was asked", func(t *testing.T) {
		tok := mint(t, AccessTokenOptions{Subject: "auth0|alice", Audience: []string{"https://api.example.com"},
			ClientID: appID, Scope: "read", NotBefore: now.Add(-time.Minute),
			Act: &Actor{Sub: "auth0|admin", Act: &Actor{Sub: "svc"}}})
		c := e.verifyJWT(t, tok)
		want := map[string]any{"iss": e.srv.URL + "/", "sub": "auth0|alice", "aud": "https://api.example.com",
			"azp": appID, "client_id": appID, "scope": "read", "iat": float64(now.Unix()),
			"exp": float64(now.Add(24 * time.Hour).Unix()), "nbf": float64(now.Add(-time.Minute).Unix()),
			"act": map[string]any{"sub": "auth0|admin", "act": map[string]any{"sub": "svc"}}}
		for k, v := range want {
			if !reflect.DeepEqual(c[k], v) {
				t.Errorf("%s = %v, want %v", k, c[k], v)
			}
		}
		if h, _, _ := jwtParts(t, tok); h["typ"] != "at+jwt" || c["nonce"] != nil || c["jti"] == nil {
			t.Errorf("header %v claims %v", h, c)
		}
	})
	for _, tc := range []struct {
		name  string
		o     AccessTokenOptions
		check func(h, c map[string]any, sig string) bool
	}{
		{"several audiences are an array", AccessTokenOptions{Audience: []string{"a", "b"}},
			func(_, c map[string]any, _ string) bool { return reflect.DeepEqual(c["aud"], []any{"a", "b"}) }},
		{"an expired token", AccessTokenOptions{ExpiresAt: now.Add(-time.Minute)},
			func(_, c map[string]any, _ string) bool { return c["exp"] == float64(now.Add(-time.Minute).Unix()) }},
		{"no exp at all", AccessTokenOptions{NoExpiry: true},
			func(_, c map[string]any, _ string) bool { _, ok := c["exp"]; return !ok }},
		{"a token from another issuer", AccessTokenOptions{Issuer: WrongIssuer},
			func(_, c map[string]any, _ string) bool { return c["iss"] == WrongIssuer }},
		{"iat in the future moves exp with it", AccessTokenOptions{IssuedAt: now.Add(time.Hour)},
			func(_, c map[string]any, _ string) bool {
				return c["iat"] == float64(now.Add(time.Hour).Unix()) && c["exp"] == float64(now.Add(25*time.Hour).Unix())
			}},
		{"an unsigned token", AccessTokenOptions{Unsigned: true},
			func(h, _ map[string]any, sig string) bool { return h["alg"] == "none" && sig == "" && h["kid"] == nil }},
		{"an unknown kid", AccessTokenOptions{Kid: "unknown"},
			func(h, _ map[string]any, _ string) bool { return h["kid"] == "unknown" && h["alg"] == "RS256" }},
		{"an ID-token-shaped token", AccessTokenOptions{Audience: []string{appID}, Nonce: "n", Typ: "JWT"},
			func(h, c map[string]any, _ string) bool {
				return h["typ"] == "JWT" && c["nonce"] == "n" && c["aud"] == appID
			}},
		{"extra claims replace the others", AccessTokenOptions{Subject: "x", Claims: map[string]any{"sub": "y", "gty": "password"}},
			func(_, c map[string]any, _ string) bool { return c["sub"] == "y" && c["gty"] == "password" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, c, sig := jwtParts(t, mint(t, tc.o))
			if !tc.check(h, c, sig) {
				t.Errorf("header %v claims %v", h, c)
			}
		})
	}
	t.Run("a bad signature does not verify", func(t *testing.T) {
		if tok := mint(t, AccessTokenOptions{BadSignature: true}); verifiesWith(tok, e.jwks(t)) {
			t.Error("it verifies")
		}
	})
	t.Run("a minted token is not good at userinfo", func(t *testing.T) {
		if status, _ := e.userinfo(t, mint(t, AccessTokenOptions{Subject: "auth0|alice"})); status != 401 {
			t.Errorf("status %d", status)
		}
	})
}
