package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pkceCode runs a code flow as alice with an S256 challenge and returns the code.
func (e *env) pkceCode(t *testing.T, extra map[string]string) string {
	t.Helper()
	e.idp.SetAutoLogin("alice", "")
	params := map[string]string{"code_challenge": s256(verifier), "code_challenge_method": "S256"}
	for k, v := range extra {
		params[k] = v
	}
	resp, _ := e.authorize(t, params)
	return e.redirected(t, resp, false).Get("code")
}

func TestCodeFlowWithPKCE(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name       string
		form       url.Values
		basic      bool
		wantStatus int
		wantError  string
	}{
		{"the right verifier with client_secret_post gets tokens",
			url.Values{"code_verifier": {verifier}}, false, 200, ""},
		{"the right verifier with client_secret_basic gets tokens",
			url.Values{"code_verifier": {verifier}}, true, 200, ""},
		{"a wrong verifier is invalid_grant",
			url.Values{"code_verifier": {strings.Repeat("x", 43)}}, false, 400, "invalid_grant"},
		{"a missing verifier is invalid_grant",
			url.Values{}, false, 400, "invalid_grant"},
		{"a different redirect_uri is invalid_grant",
			url.Values{"code_verifier": {verifier}, "redirect_uri": {"https://other.example.test/cb"}}, false, 400, "invalid_grant"},
		{"a wrong client secret is invalid_client",
			url.Values{"code_verifier": {verifier}, "client_id": {appID}, "client_secret": {"wrong"}}, false, 401, "invalid_client"},
		{"another client's credentials cannot redeem the code",
			url.Values{"code_verifier": {verifier}, "client_id": {"other"}, "client_secret": {"other-secret"}}, false, 400, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := tc.form
			form.Set("grant_type", "authorization_code")
			form.Set("code", e.pkceCode(t, nil))
			if !form.Has("redirect_uri") {
				form.Set("redirect_uri", appCallback)
			}
			var resp *http.Response
			var body string
			if tc.basic {
				req, _ := http.NewRequest(http.MethodPost, e.url("oauth/token"), strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(url.QueryEscape(appID), url.QueryEscape(appSecret))
				resp, body = e.do(t, req)
			} else {
				if !form.Has("client_id") {
					form.Set("client_id", appID)
					form.Set("client_secret", appSecret)
				}
				resp, body = e.post(t, e.url("oauth/token"), form)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			if tc.wantError != "" && !strings.Contains(body, `"error":"`+tc.wantError+`"`) {
				t.Errorf("body %s, want %s", body, tc.wantError)
			}
			if tc.wantError == "" {
				for _, f := range []string{`"access_token":`, `"id_token":`, `"token_type":"Bearer"`, `"expires_in":86400`, `"scope":"openid profile email"`} {
					if !strings.Contains(body, f) {
						t.Errorf("body %s lacks %s", body, f)
					}
				}
				if strings.Contains(body, "refresh_token") {
					t.Error("a refresh token without offline_access")
				}
			}
		})
	}
}

func TestCodesAreSingleUseAndShortLived(t *testing.T) {
	e := newEnv(t, nil)
	form := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCallback}, "code_verifier": {verifier}}
	}
	t.Run("a second use of a code is invalid_grant and revokes the first tokens", func(t *testing.T) {
		code := e.pkceCode(t, nil)
		status, tok := e.exchange(t, form(code))
		if status != 200 {
			t.Fatalf("first use: %d %v", status, tok)
		}
		status, again := e.exchange(t, form(code))
		if status != 400 || again["error"] != "invalid_grant" {
			t.Errorf("second use: %d %v", status, again)
		}
		if status, _ := e.userinfo(t, tok["access_token"].(string)); status != 401 {
			t.Errorf("userinfo with the revoked token: %d", status)
		}
	})
	t.Run("a code older than 10 minutes is invalid_grant", func(t *testing.T) {
		code := e.pkceCode(t, nil)
		e.clock.Add(codeTTL + 1)
		if status, m := e.exchange(t, form(code)); status != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("an unknown code is invalid_grant", func(t *testing.T) {
		if status, m := e.exchange(t, form("garbage")); status != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("a plain challenge is checked too", func(t *testing.T) {
		code := e.pkceCode(t, map[string]string{"code_challenge": verifier, "code_challenge_method": "plain"})
		if status, m := e.exchange(t, form(code)); status != 200 {
			t.Errorf("got %d %v", status, m)
		}
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, contentType, body string
		wantStatus              int
		wantError               string
	}{
		{"an unknown grant type is unsupported_grant_type", "application/x-www-form-urlencoded",
			"grant_type=password&client_id=app&client_secret=app-secret", 400, "unsupported_grant_type"},
		{"a missing grant type is invalid_request", "application/x-www-form-urlencoded",
			"client_id=app&client_secret=app-secret", 400, "invalid_request"},
		{"no client authentication is invalid_client", "application/x-www-form-urlencoded",
			"grant_type=authorization_code&code=x", 401, "invalid_client"},
		{"a JSON body authenticates no client", "application/json",
			`{"client_id":"app","client_secret":"app-secret"}`, 401, "invalid_client"},
		{"a malformed form is invalid_request", "application/x-www-form-urlencoded",
			"grant_type=%zz", 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.url("oauth/token"), strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			resp, body := e.do(t, req)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, `"error":"`+tc.wantError+`"`) {
				t.Errorf("got %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestAudienceGetsJWTAccessToken(t *testing.T) {
	e := newEnv(t, nil)
	code := e.pkceCode(t, map[string]string{"audience": "https://api.example.com"})
	_, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {appCallback}, "code_verifier": {verifier}})
	at := tok["access_token"].(string)
	claims := e.verifyJWT(t, at)
	t.Run("the access token is a JWT for the audience and the userinfo endpoint", func(t *testing.T) {
		aud, _ := claims["aud"].([]any)
		if len(aud) != 2 || aud[0] != "https://api.example.com" || aud[1] != e.srv.URL+"/userinfo" {
			t.Errorf("aud = %v", claims["aud"])
		}
		if claims["sub"] != "auth0|alice" || claims["azp"] != appID || claims["scope"] != "openid profile email" || claims["jti"] == nil {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("it follows RFC 9068: typ at+jwt and client_id", func(t *testing.T) {
		if h, _, _ := jwtParts(t, at); h["typ"] != "at+jwt" || claims["client_id"] != appID || claims["iat"] == nil || claims["exp"] == nil {
			t.Errorf("header %v claims %v", h, claims)
		}
	})
	t.Run("it works at userinfo", func(t *testing.T) {
		if status, info := e.userinfo(t, at); status != 200 || info["sub"] != "auth0|alice" {
			t.Errorf("userinfo %d %v", status, info)
		}
	})
}

func TestRefreshTokenGrant(t *testing.T) {
	e := newEnv(t, nil)
	code := e.pkceCode(t, map[string]string{"scope": "openid email offline_access"})
	_, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {appCallback}, "code_verifier": {verifier}})
	rt, _ := tok["refresh_token"].(string)
	if rt == "" {
		t.Fatalf("no refresh token with offline_access: %v", tok)
	}
	e.clock.Add(e.idp.cfg.AccessTokenTTL + 1)
	t.Run("the first access token has expired", func(t *testing.T) {
		if status, _ := e.userinfo(t, tok["access_token"].(string)); status != 401 {
			t.Errorf("status %d", status)
		}
	})
	t.Run("the refresh token gets a new access token, ID token and the same refresh token", func(t *testing.T) {
		status, again := e.exchange(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if status != 200 || again["refresh_token"] != rt || again["id_token"] == nil {
			t.Fatalf("got %d %v", status, again)
		}
		claims := e.verifyJWT(t, again["id_token"].(string))
		if claims["sub"] != "auth0|alice" || claims["nonce"] != nil || claims["iat"] != float64(e.clock.Now().Unix()) {
			t.Errorf("claims %v", claims)
		}
		if status, _ := e.userinfo(t, again["access_token"].(string)); status != 200 {
			t.Errorf("userinfo %d", status)
		}
	})
	t.Run("another client cannot use it", func(t *testing.T) {
		status, m := e.exchange(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
			"client_id": {"other"}, "client_secret": {"other-secret"}})
		if status != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("a garbage refresh token is invalid_grant", func(t *testing.T) {
		if status, m := e.exchange(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}); status != 400 || m["error"] != "invalid_grant" {
			t.Errorf("got %d %v", status, m)
		}
	})
}

func TestUserinfoRefusesBadTokens(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, header string }{
		{"a garbage token is refused", "Bearer garbage"},
		{"a missing header is refused", ""},
		{"another scheme is refused", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.url("userinfo"), nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, _ := e.do(t, req)
			if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
				t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}
