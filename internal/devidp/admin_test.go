package devidp

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var (
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	linkRE = regexp.MustCompile(`<a class="button" id="impersonation-link" href="([^"]+)"`)
)

// adminPage signs the browser in as userKey from the admin page and returns the page after.
func (e *env) adminPage(t *testing.T, userKey string) (*http.Response, string) {
	t.Helper()
	_, body := e.get(t, e.url("admin"))
	m := txRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the admin page shows no login: %s", body)
	}
	resp, _ := e.post(t, e.url("login"), url.Values{"tx": {m[1]}, "user": {userKey}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin" {
		t.Fatalf("login returned %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return e.get(t, e.url("admin"))
}

func TestAdminPageRequiresAnAdmin(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("without a session it shows the login page", func(t *testing.T) {
		resp, body := e.get(t, e.url("admin"))
		if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Sign in</h1>") || strings.Contains(body, "<h1>Users</h1>") {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a user who is not an admin is shown the login page again with a notice", func(t *testing.T) {
		_, body := e.adminPage(t, "alice")
		if !strings.Contains(body, "<h1>Sign in</h1>") || !strings.Contains(body, "is not an administrator") {
			t.Errorf("page %s", body)
		}
	})
	t.Run("a POST without an admin session is forbidden", func(t *testing.T) {
		resp, _ := e.post(t, e.url("admin/impersonate"), url.Values{"user": {"bob"}, "client_id": {appID}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestAdminSignInAsUser(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.adminPage(t, "admin")
	t.Run("an admin sees the users, not themself, with Sign in as User forms", func(t *testing.T) {
		if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Users</h1>") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
		for _, id := range []string{`id="impersonate-alice"`, `id="impersonate-alice-submit"`, `id="kc-impersonate-carol"`,
			`id="impersonate-mallory-submit"`, `<option value="app">`, `<option value="post">POST</option>`, `value="openid profile email"`} {
			if !strings.Contains(body, id) {
				t.Errorf("page lacks %s", id)
			}
		}
		if strings.Contains(body, `id="impersonate-admin"`) {
			t.Error("the admin is listed")
		}
	})
	csrf := csrfRE.FindStringSubmatch(body)[1]
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "user": {"bob"}, "client_id": {appID}, "response_mode": {"get"},
			"response_type": {"code"}, "scope": {"openid"}, "state": {"from-admin"}}
	}
	t.Run("a POST with a wrong CSRF token is forbidden", func(t *testing.T) {
		wrong := "x" + csrf[1:]
		if csrf[0] == 'x' {
			wrong = "y" + csrf[1:]
		}
		for _, token := range []string{"", wrong} {
			if resp, _ := e.post(t, e.url("admin/impersonate"), form(token)); resp.StatusCode != http.StatusForbidden {
				t.Errorf("token %q: status %d", token, resp.StatusCode)
			}
		}
	})
	t.Run("Sign in as User shows a link that signs in as the user, impersonated by the admin", func(t *testing.T) {
		resp, body := e.post(t, e.url("admin/impersonate"), form(csrf))
		m := linkRE.FindStringSubmatch(body)
		if resp.StatusCode != 200 || m == nil || !strings.Contains(body, `id="impersonation-link-text"`) {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
		link := strings.ReplaceAll(m[1], "&amp;", "&")
		resp, _ = e.get(t, link)
		v := e.redirected(t, resp, false)
		if v.Get("state") != "from-admin" {
			t.Errorf("got %v", v)
		}
		_, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {v.Get("code")}, "redirect_uri": {appCallback}})
		_, info := e.userinfo(t, tok["access_token"].(string))
		if info["sub"] != "auth0|bob" || info["impersonator"].(map[string]any)["user_id"] != "auth0|admin" {
			t.Errorf("userinfo %v", info)
		}
	})
	t.Run("a bad scope of settings is refused with a page", func(t *testing.T) {
		f := form(csrf)
		f.Set("client_id", "ghost")
		if resp, _ := e.post(t, e.url("admin/impersonate"), f); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestAdminKeycloakStyleImpersonation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Mode = ModeKeycloak })
	_, body := e.adminPage(t, "admin")
	csrf := csrfRE.FindStringSubmatch(body)[1]
	t.Run("a wrong CSRF token is forbidden", func(t *testing.T) {
		if resp, _ := e.post(t, e.url("admin/kc-impersonate"), url.Values{"csrf": {"nope"}, "user": {"carol"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	resp, body := e.post(t, e.url("admin/kc-impersonate"), url.Values{"csrf": {csrf}, "user": {"carol"}})
	t.Run("it says to open the application", func(t *testing.T) {
		if resp.StatusCode != 200 || !strings.Contains(body, "Now open the application") {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("the next ordinary login carries the impersonator", func(t *testing.T) {
		resp, _ := e.authorize(t, map[string]string{"response_type": "id_token token", "nonce": "n"})
		claims := e.verifyJWT(t, e.redirected(t, resp, true).Get("id_token"))
		imp, _ := claims["impersonator"].(map[string]any)
		if claims["sub"] != "auth0|carol" || imp["id"] != "auth0|admin" || imp["username"] != "admin" {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("the admin still reaches the admin page and can stop", func(t *testing.T) {
		_, body := e.get(t, e.url("admin"))
		if !strings.Contains(body, `id="kc-impersonating"`) {
			t.Fatalf("page %s", body)
		}
		if resp, _ := e.post(t, e.url("admin/kc-stop"), url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("stop: %d", resp.StatusCode)
		}
		resp, _ := e.authorize(t, map[string]string{"response_type": "id_token token", "nonce": "n"})
		claims := e.verifyJWT(t, e.redirected(t, resp, true).Get("id_token"))
		if claims["sub"] != "auth0|admin" || claims["impersonator"] != nil {
			t.Errorf("claims %v", claims)
		}
	})
}
