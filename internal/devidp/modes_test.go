package devidp

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// linkTokens follows an impersonation link for alice by admin (response type token, the
// given audience ignored) and returns the fragment.
func (e *env) linkTokens(t *testing.T) url.Values {
	t.Helper()
	resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "auth0|alice", ImpersonatorID: "auth0|admin",
		ResponseType: "token", Scope: "openid profile email"}))
	return e.redirected(t, resp, true)
}

func TestAuth0ImpersonatedTokens(t *testing.T) {
	e := newEnv(t, nil)
	v := e.linkTokens(t)
	at := v.Get("access_token")
	t.Run("the access token is opaque", func(t *testing.T) {
		if len(at) != 32 || strings.Contains(at, ".") {
			t.Errorf("access token %q", at)
		}
	})
	t.Run("userinfo carries impersonated and the impersonator", func(t *testing.T) {
		status, info := e.userinfo(t, at)
		want := map[string]any{"user_id": "auth0|admin", "email": "admin@example.com"}
		if status != 200 || info["sub"] != "auth0|alice" || info["impersonated"] != true || !reflect.DeepEqual(info["impersonator"], want) {
			t.Errorf("userinfo %d %v", status, info)
		}
	})
	t.Run("the ID token carries no impersonation claims", func(t *testing.T) {
		claims := e.verifyJWT(t, v.Get("id_token"))
		for k := range claims {
			if strings.Contains(k, "imperson") || k == "act" {
				t.Errorf("claim %s = %v", k, claims[k])
			}
		}
	})
	t.Run("a code from the link is exchanged for an opaque token and no refresh token, even with offline_access", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice", Scope: "openid offline_access"}))
		code := e.redirected(t, resp, false).Get("code")
		status, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCallback}})
		if at, _ := tok["access_token"].(string); status != 200 || strings.Contains(at, ".") || tok["refresh_token"] != nil {
			t.Errorf("got %d %v", status, tok)
		}
	})
	t.Run("with a Namespace the ID token carries namespaced claims only", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Namespace = "https://example.com/" })
		claims := e.verifyJWT(t, e.linkTokens(t).Get("id_token"))
		want := map[string]any{"user_id": "auth0|admin", "email": "admin@example.com"}
		if claims["https://example.com/impersonated"] != true || !reflect.DeepEqual(claims["https://example.com/impersonator"], want) {
			t.Errorf("claims %v", claims)
		}
		if claims["impersonated"] != nil || claims["impersonator"] != nil {
			t.Errorf("top-level claims %v", claims)
		}
	})
	t.Run("an ordinary login carries no impersonation in userinfo", func(t *testing.T) {
		e.idp.SetAutoLogin("alice", "")
		resp, _ := e.authorize(t, map[string]string{"response_type": "token"})
		if _, info := e.userinfo(t, e.redirected(t, resp, true).Get("access_token")); info["impersonated"] != nil || info["impersonator"] != nil {
			t.Errorf("userinfo %v", info)
		}
	})
}

func TestOtherImpersonationModes(t *testing.T) {
	for _, tc := range []struct {
		mode  Mode
		claim string
		want  any
	}{
		{ModeKeycloak, "impersonator", map[string]any{"id": "auth0|admin", "username": "admin"}},
		{ModeAct, "act", map[string]any{"sub": "auth0|admin"}},
	} {
		e := newEnv(t, func(c *Config) { c.Mode = tc.mode })
		t.Run("in "+string(tc.mode)+" mode a link's ID token and userinfo carry "+tc.claim, func(t *testing.T) {
			v := e.linkTokens(t)
			if claims := e.verifyJWT(t, v.Get("id_token")); !reflect.DeepEqual(claims[tc.claim], tc.want) {
				t.Errorf("ID token %s = %v", tc.claim, claims[tc.claim])
			}
			if _, info := e.userinfo(t, v.Get("access_token")); !reflect.DeepEqual(info[tc.claim], tc.want) || info["impersonated"] != nil {
				t.Errorf("userinfo %v", info)
			}
		})
		t.Run("in "+string(tc.mode)+" mode an auto-login impersonated SSO session carries "+tc.claim+" in every token", func(t *testing.T) {
			e.idp.SetAutoLogin("alice", "admin")
			defer e.idp.SetAutoLogin("", "")
			resp, _ := e.authorize(t, map[string]string{"audience": "https://api.example.com", "nonce": "n",
				"code_challenge": s256(verifier), "code_challenge_method": "S256"})
			code := e.redirected(t, resp, false).Get("code")
			status, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {appCallback}, "code_verifier": {verifier}})
			if status != 200 {
				t.Fatalf("exchange %d %v", status, tok)
			}
			id := e.verifyJWT(t, tok["id_token"].(string))
			if !reflect.DeepEqual(id[tc.claim], tc.want) || id["sub"] != "auth0|alice" || id["nonce"] != "n" {
				t.Errorf("ID token %v", id)
			}
			if access := e.verifyJWT(t, tok["access_token"].(string)); !reflect.DeepEqual(access[tc.claim], tc.want) {
				t.Errorf("access token %v", access)
			}
			if _, info := e.userinfo(t, tok["access_token"].(string)); !reflect.DeepEqual(info[tc.claim], tc.want) {
				t.Errorf("userinfo %v", info)
			}
		})
	}
	t.Run("in auth0 mode an impersonated SSO session gets an opaque access token despite the audience", func(t *testing.T) {
		e := newEnv(t, nil)
		e.idp.SetAutoLogin("alice", "admin")
		resp, _ := e.authorize(t, map[string]string{"response_type": "token", "audience": "https://api.example.com"})
		at := e.redirected(t, resp, true).Get("access_token")
		if strings.Contains(at, ".") {
			t.Errorf("access token %q is a JWT", at)
		}
		if _, info := e.userinfo(t, at); info["impersonated"] != true {
			t.Errorf("userinfo %v", info)
		}
	})
}
