package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// signIn gives the browser an SSO session as userKey through the login page.
func (e *env) signIn(t *testing.T, userKey string) {
	t.Helper()
	_, body := e.authorize(t, map[string]string{"prompt": "login"})
	m := txRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no login page: %s", body)
	}
	if resp, _ := e.post(t, e.url("login"), url.Values{"tx": {m[1]}, "user": {userKey}}); resp.StatusCode != http.StatusFound {
		t.Fatalf("login as %s: %d", userKey, resp.StatusCode)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t, nil)
	idToken := func() string {
		e.idp.SetAutoLogin("alice", "")
		defer e.idp.SetAutoLogin("", "")
		resp, _ := e.authorize(t, map[string]string{"response_type": "id_token token", "nonce": "n"})
		return e.redirected(t, resp, true).Get("id_token")
	}()
	for _, tc := range []struct {
		name, path   string
		wantLocation string // empty: the signed-out page
	}{
		{"v2 logout returns to an allowed returnTo", "v2/logout?client_id=app&returnTo=" + url.QueryEscape(appHome), appHome},
		{"v2 logout without client_id accepts any client's logout URL", "v2/logout?returnTo=" + url.QueryEscape(appHome), appHome},
		{"v2 logout refuses another client's URL", "v2/logout?client_id=other&returnTo=" + url.QueryEscape(appHome), ""},
		{"v2 logout refuses an unknown URL", "v2/logout?client_id=app&returnTo=" + url.QueryEscape("https://evil.example/"), ""},
		{"v2 logout without returnTo shows the signed-out page", "v2/logout", ""},
		{"OIDC logout returns to an allowed URL with the state", "oidc/logout?client_id=app&state=s1&post_logout_redirect_uri=" + url.QueryEscape(appHome), appHome + "?state=s1"},
		{"OIDC logout finds the client in id_token_hint", "oidc/logout?id_token_hint=" + idToken + "&post_logout_redirect_uri=" + url.QueryEscape(appHome), appHome},
		{"OIDC logout refuses a URL the client does not allow", "oidc/logout?client_id=app&post_logout_redirect_uri=" + url.QueryEscape("https://evil.example/"), ""},
		{"OIDC logout ignores a forged id_token_hint", "oidc/logout?id_token_hint=a.b.c&post_logout_redirect_uri=" + url.QueryEscape("https://other.example.test/"), "https://other.example.test/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.signIn(t, "alice")
			resp, body := e.get(t, e.url(tc.path))
			if tc.wantLocation != "" {
				if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.wantLocation {
					t.Errorf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
				}
			} else if resp.StatusCode != 200 || !strings.Contains(body, "You are signed out") || resp.Header.Get("Location") != "" {
				t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, "devidp_sso=;") || !strings.Contains(c, "Max-Age=0") {
				t.Errorf("Set-Cookie %q does not clear the SSO cookie", c)
			}
			if resp, _ := e.authorize(t, nil); resp.StatusCode != 200 {
				t.Errorf("after logout /authorize answered %d, not the login page", resp.StatusCode)
			}
		})
	}
}
