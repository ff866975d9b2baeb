package devidp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.get(t, e.url(".well-known/openid-configuration"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	iss := e.srv.URL + "/"
	for _, tc := range []struct {
		field string
		want  any
	}{
		{"issuer", iss},
		{"authorization_endpoint", iss + "authorize"},
		{"token_endpoint", iss + "oauth/token"},
		{"userinfo_endpoint", iss + "userinfo"},
		{"jwks_uri", iss + ".well-known/jwks.json"},
		{"end_session_endpoint", iss + "oidc/logout"},
		{"response_types_supported", []any{"code", "token", "id_token token"}},
		{"response_modes_supported", []any{"query", "fragment", "form_post"}},
		{"subject_types_supported", []any{"public"}},
		{"id_token_signing_alg_values_supported", []any{"RS256"}},
		{"code_challenge_methods_supported", []any{"S256", "plain"}},
		{"token_endpoint_auth_methods_supported", []any{"client_secret_basic", "client_secret_post", "private_key_jwt"}},
		{"token_endpoint_auth_signing_alg_values_supported", []any{"RS256", "ES256"}},
		{"grant_types_supported", []any{"authorization_code", "implicit", "refresh_token", "client_credentials",
			"urn:ietf:params:oauth:grant-type:token-exchange"}},
	} {
		t.Run("it announces "+tc.field, func(t *testing.T) {
			if !reflect.DeepEqual(d[tc.field], tc.want) {
				t.Errorf("%s = %v, want %v", tc.field, d[tc.field], tc.want)
			}
		})
	}
	t.Run("it omits end_session_endpoint when RP-initiated logout is disabled", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.DisableEndSession = true })
		_, body := e.get(t, e.url(".well-known/openid-configuration"))
		var d map[string]any
		json.Unmarshal([]byte(body), &d)
		if _, ok := d["end_session_endpoint"]; ok {
			t.Errorf("end_session_endpoint present: %v", d["end_session_endpoint"])
		}
	})
}

func TestJWKSVerifiesIssuedIDToken(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.SetAutoLogin("alice", "")
	resp, _ := e.authorize(t, map[string]string{"nonce": "n-1"})
	code := e.redirected(t, resp, false).Get("code")
	status, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCallback}})
	if status != 200 {
		t.Fatalf("token: %d %v", status, tok)
	}
	claims := e.verifyJWT(t, tok["id_token"].(string))
	now := e.clock.Now().Unix()
	for _, tc := range []struct {
		claim string
		want  any
	}{
		{"iss", e.srv.URL + "/"},
		{"sub", "auth0|alice"},
		{"aud", appID},
		{"azp", appID},
		{"nonce", "n-1"},
		{"iat", float64(now)},
		{"auth_time", float64(now)},
		{"exp", float64(now + 36000)},
		{"email", "alice@example.com"},
		{"email_verified", true},
		{"name", "Alice Example"},
		{"nickname", "alice"},
		{"preferred_username", "alice"},
		{"groups", []any{"staff"}},
		{"roles", []any{"user"}},
	} {
		t.Run("the ID token carries "+tc.claim, func(t *testing.T) {
			if !reflect.DeepEqual(claims[tc.claim], tc.want) {
				t.Errorf("%s = %#v, want %#v", tc.claim, claims[tc.claim], tc.want)
			}
		})
	}
	t.Run("the ID token has a session id", func(t *testing.T) {
		if sid, _ := claims["sid"].(string); sid == "" {
			t.Error("no sid")
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"an issuer without a trailing slash is refused", Config{Issuer: "http://127.0.0.1:1"}},
		{"a relative issuer is refused", Config{Issuer: "/idp/"}},
		{"an unknown mode is refused", Config{Issuer: "http://127.0.0.1:1/", Mode: "saml"}},
		{"a user key that cannot be an HTML id is refused", Config{Issuer: "http://127.0.0.1:1/", Users: []User{{Key: "a b", ID: "x"}}}},
		{"two users with one key are refused", Config{Issuer: "http://127.0.0.1:1/", Users: []User{{Key: "a", ID: "x"}, {Key: "a", ID: "y"}}}},
		{"two clients with one id are refused", Config{Issuer: "http://127.0.0.1:1/", Clients: []Client{{ID: "c"}, {ID: "c"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Key = sharedKey(t)
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestIssuerWithPath(t *testing.T) {
	var idp *Server
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { idp.ServeHTTP(w, r) }))
	defer srv.Close()
	idp, err := New(Config{Issuer: srv.URL + "/tenant/", Key: sharedKey(t),
		Clients: []Client{{ID: appID, Secret: appSecret, RedirectURIs: []string{appCallback}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{idp: idp, srv: srv, browser: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	t.Run("discovery lives under the issuer's path", func(t *testing.T) {
		_, body := e.get(t, srv.URL+"/tenant/.well-known/openid-configuration")
		if !strings.Contains(body, `"authorization_endpoint":"`+srv.URL+`/tenant/authorize"`) {
			t.Errorf("discovery %s", body)
		}
	})
	t.Run("the login form posts under the issuer's path", func(t *testing.T) {
		_, body := e.get(t, srv.URL+"/tenant/authorize?client_id=app&response_type=code&redirect_uri="+url.QueryEscape(appCallback))
		if !strings.Contains(body, `action="/tenant/login"`) {
			t.Errorf("login page %s", body)
		}
	})
}
