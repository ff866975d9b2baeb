package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// callAPI posts body to the impersonation API for user id with the bearer token.
func (e *env) callAPI(t *testing.T, id, token, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url("users/"+url.PathEscape(id)+"/impersonate"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.do(t, req)
}

const apiBody = `{"protocol":"oauth2","impersonator_id":"auth0|admin","client_id":"app",
	"additionalParameters":{"response_type":"code","state":"fixed-state","callback_url":"` + appCallback + `"}}`

func TestImpersonationAPI(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, token, body string
		wantStatus        int
	}{
		{"it refuses a call without the admin token", "", apiBody, 401},
		{"it refuses a wrong admin token", "nope", apiBody, 401},
		{"it refuses a callback_url the client does not allow", adminToken,
			strings.Replace(apiBody, appCallback, "https://evil.example/cb", 1), 400},
		{"it refuses an unknown impersonator", adminToken, strings.Replace(apiBody, "auth0|admin", "auth0|ghost", 1), 400},
		{"it refuses an unknown client", adminToken, strings.Replace(apiBody, `"client_id":"app"`, `"client_id":"ghost"`, 1), 400},
		{"it refuses the saml protocol", adminToken, strings.Replace(apiBody, "oauth2", "samlp", 1), 400},
		{"it refuses an unknown response type", adminToken, strings.Replace(apiBody, `"response_type":"code"`, `"response_type":"id_token"`, 1), 400},
		{"it refuses malformed JSON", adminToken, `{"client_id":`, 400},
		{"it refuses additionalParameters of the wrong type", adminToken, `{"additionalParameters":"x"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.callAPI(t, "auth0|alice", tc.token, tc.body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, `"error"`) {
				t.Errorf("got %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
		})
	}
	t.Run("it refuses an unknown user", func(t *testing.T) {
		if resp, _ := e.callAPI(t, "auth0|ghost", adminToken, apiBody); resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("it is disabled without an AdminToken", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.AdminToken = "" })
		if resp, _ := e.callAPI(t, "auth0|alice", "", apiBody); resp.StatusCode != 403 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})

	resp, link := e.callAPI(t, "auth0|alice", adminToken, apiBody)
	t.Run("it answers a bare link in text", func(t *testing.T) {
		prefix := e.srv.URL + "/users/auth0%7Calice/impersonate?&bewit="
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.HasPrefix(link, prefix) {
			t.Errorf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), link)
		}
	})
	t.Run("following the link sends the code with the link's state to the callback", func(t *testing.T) {
		resp, _ := e.get(t, link)
		if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, appCallback+"?code=") {
			t.Errorf("Location %q", loc)
		}
		v := e.redirected(t, resp, false)
		if v.Get("state") != "fixed-state" || v.Get("code") == "" {
			t.Errorf("got %v", v)
		}
		status, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {v.Get("code")}, "redirect_uri": {appCallback}})
		if status != 200 || tok["id_token"] == nil || tok["refresh_token"] != nil || tok["expires_in"] != float64(86400) {
			t.Errorf("exchange %d %v", status, tok)
		}
		if claims := e.verifyJWT(t, tok["id_token"].(string)); claims["sub"] != "auth0|alice" || claims["nonce"] != nil {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("the link works only once", func(t *testing.T) {
		resp, body := e.get(t, link)
		if resp.StatusCode != 401 || body != `{"error":"access_denied","error_description":"Impersonation - link already used"}`+"\n" {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
}

func TestImpersonationLinkTampering(t *testing.T) {
	e := newEnv(t, nil)
	badMac := `{"error":"access_denied","error_description":"Impersonation - Bad mac"}` + "\n"
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for _, tc := range []struct {
		name   string
		change func(link string) string
	}{
		{"a changed character in the payload is a bad mac", func(l string) string { return flip(l, strings.Index(l, "bewit=")+10) }},
		{"a changed character in the mac is a bad mac", func(l string) string { return flip(l, len(l)-3) }},
		{"a truncated bewit is a bad mac", func(l string) string { return l[:len(l)-20] }},
		{"a bewit without a dot is a bad mac", func(l string) string { i := strings.LastIndex(l, "."); return l[:i] + l[i+1:] }},
		{"a bewit that is not base64 is a bad mac", func(l string) string { return l[:strings.Index(l, "bewit=")+6] + "!!!.***" }},
		{"a missing bewit is a bad mac", func(l string) string { return l[:strings.Index(l, "?")] }},
		{"another user's path is a bad mac", func(l string) string { return strings.Replace(l, "auth0%7Calice", "auth0%7Cbob", 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := e.mustImpersonate(t, ImpersonateParams{UserID: "auth0|alice", State: "s"})
			resp, body := e.get(t, tc.change(link))
			if resp.StatusCode != 401 || body != badMac {
				t.Errorf("got %d %s", resp.StatusCode, body)
			}
			if resp, _ := e.get(t, link); resp.StatusCode != 302 {
				t.Errorf("the untouched link then answers %d", resp.StatusCode)
			}
		})
	}
	t.Run("a link older than 10 minutes has expired", func(t *testing.T) {
		link := e.mustImpersonate(t, ImpersonateParams{UserID: "alice"})
		e.clock.Add(linkTTL)
		resp, body := e.get(t, link)
		if resp.StatusCode != 401 || !strings.Contains(body, "Impersonation - link expired") {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
}

func TestImpersonationResponseShapes(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("response type code without state sends no state parameter", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice"}))
		if v := e.redirected(t, resp, false); v.Get("code") == "" || v.Has("state") {
			t.Errorf("got %v", v)
		}
	})
	t.Run("response type token puts the tokens in the fragment, never the state", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice", ResponseType: "token", State: "ignored"}))
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, appCallback+"#access_token=") || !strings.HasSuffix(loc, "&scope=openid&expires_in=86400&token_type=Bearer") {
			t.Errorf("Location %q", loc)
		}
		v := e.redirected(t, resp, true)
		if v.Has("state") || v.Get("id_token") == "" {
			t.Errorf("got %v", v)
		}
		if claims := e.verifyJWT(t, v.Get("id_token")); claims["nonce"] != nil || claims["iat"] != float64(e.clock.Now().Unix()) ||
			claims["auth_time"] != float64(e.clock.Now().Unix()) || claims["aud"] != appID {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("response type token without openid has no ID token", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice", ResponseType: "token", Scope: "profile"}))
		if v := e.redirected(t, resp, true); v.Has("id_token") || v.Get("access_token") == "" {
			t.Errorf("got %v", v)
		}
	})
	for _, tc := range []struct {
		name, responseType string
		fields             []string
	}{
		{"form_post with code posts the code and the state", "code", []string{`name="code"`, `name="state" value="s&#43;1"`}},
		{"form_post with token posts the tokens", "token", []string{`name="access_token"`, `name="id_token"`, `name="token_type" value="Bearer"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice", ResponseType: tc.responseType,
				ResponseMode: "form_post", State: "s+1"}))
			if resp.StatusCode != 200 || !strings.Contains(body, `action="`+appCallback+`"`) {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			for _, f := range tc.fields {
				if !strings.Contains(body, f) {
					t.Errorf("page lacks %s:\n%s", f, body)
				}
			}
		})
	}
	t.Run("tokens in the query are refused at minting", func(t *testing.T) {
		if _, err := e.idp.Impersonate(ImpersonateParams{UserID: "alice", ImpersonatorID: "admin", ClientID: appID,
			ResponseType: "token", ResponseMode: "query"}); err == nil {
			t.Error("accepted")
		}
	})
	t.Run("an empty callback means the client's first callback URL", func(t *testing.T) {
		resp, _ := e.get(t, e.mustImpersonate(t, ImpersonateParams{UserID: "alice"}))
		if !strings.HasPrefix(resp.Header.Get("Location"), appCallback+"?") {
			t.Errorf("Location %q", resp.Header.Get("Location"))
		}
	})
}
