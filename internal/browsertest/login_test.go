package browsertest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

func TestOrdinaryLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   options
		cookie string
		secure bool
	}{
		{"with insecure cookies on plain http", options{}, "_oidc_auth", false},
		{"with Secure __Host- cookies on http://localhost", options{secureCookies: true}, "__Host-oidc_auth", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)

			v := e.signIn("alice")
			if v.User != "alice@example.com" || v.Banner {
				t.Errorf("the app shows user %q (impersonation banner: %v), want alice@example.com, not impersonated", v.User, v.Banner)
			}
			v.checkHeaders(t, map[string]string{
				"X-Forwarded-User":               "auth0|alice",
				"X-Forwarded-Email":              "alice@example.com",
				"X-Forwarded-Preferred-Username": "alice",
				"X-Forwarded-Groups":             "staff",
				"X-Forwarded-Impersonated":       "false",
				"X-Forwarded-Impersonator":       "",
			})
			if !strings.HasPrefix(v.URL, e.site+"/") {
				t.Errorf("after the login the browser is at %s, want the site", v.URL)
			}

			c := e.cookie(tc.cookie)
			switch {
			case c == nil:
				t.Fatalf("no session cookie %s; the site's cookies: %v", tc.cookie, cookieNames(e.siteCookies()))
			case !c.HTTPOnly || c.Secure != tc.secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/":
				t.Errorf("session cookie %s: HttpOnly %v, Secure %v, SameSite %q, Path %q; want HttpOnly, Secure %v, Lax, /",
					c.Name, c.HTTPOnly, c.Secure, c.SameSite, c.Path, tc.secure)
			}
			if att := e.attemptCookies(); len(att) != 0 {
				t.Errorf("state cookies left after the login: %v", att)
			}
			logins := e.idpLog.count(http.MethodGet, "/authorize")
			if logins != 1 {
				t.Errorf("the browser went to the provider's /authorize %d times for one login", logins)
			}

			// A reload keeps the session.
			e.navigateBy("reloading", chromedp.Reload(), isApp)
			if v := e.app(); v.User != "alice@example.com" || v.Headers["X-Forwarded-User"] != "auth0|alice" {
				t.Errorf("after a reload the app shows %q (X-Forwarded-User %q)", v.User, v.Headers["X-Forwarded-User"])
			}

			// A second tab shares it.
			tab2 := e.newTab("tab2")
			tab2.navigate(e.site+"/", isApp)
			if v := tab2.app(); v.User != "alice@example.com" || v.Headers["X-Forwarded-User"] != "auth0|alice" {
				t.Errorf("the second tab shows %q (X-Forwarded-User %q)", v.User, v.Headers["X-Forwarded-User"])
			}

			if n := e.idpLog.count(http.MethodGet, "/authorize"); n != logins {
				t.Errorf("the reload and the second tab went to the provider's /authorize %d more times", n-logins)
			}
			if n := e.idpLog.count(http.MethodPost, "/login"); n != 1 {
				t.Errorf("the provider's login form was submitted %d times, want once", n)
			}
			if att := e.attemptCookies(); len(att) != 0 {
				t.Errorf("state cookies after the reload and the second tab: %v", att)
			}
		})
	}
}

func TestLogoutEndsTheProviderSessionToo(t *testing.T) {
	e := newEnv(t, options{})
	e.signIn("alice")
	before := e.siteLog.len()
	idpBefore := e.idpLog.len()

	// Sign out: the site clears its session, the provider ends its own and sends the browser
	// back to the site, which needs a login again: the provider's login page shows.
	e.click("#logout", onLoginPage("alice"))
	if loc := e.location(); !strings.HasPrefix(loc, e.idpURL+"authorize") {
		t.Errorf("after signing out the browser is at %s, want the provider's login page", loc)
	}

	site := e.siteLog.since(before)
	idp := e.idpLog.since(idpBefore)
	var sitePaths, idpPaths []string
	for _, r := range site {
		if r.FetchDest == "document" { // navigations, not the favicon
			sitePaths = append(sitePaths, r.Method+" "+r.Path)
		}
	}
	for _, r := range idp {
		if r.FetchDest == "document" {
			idpPaths = append(idpPaths, r.Method+" "+r.Path)
		}
	}
	if want := []string{"GET /oauth2/logout", "GET /"}; strings.Join(sitePaths, ", ") != strings.Join(want, ", ") {
		t.Errorf("the site saw %v, want %v (the logout, then the provider's redirect back to /)", sitePaths, want)
	}
	if want := []string{"GET /oidc/logout", "GET /authorize"}; strings.Join(idpPaths, ", ") != strings.Join(want, ", ") {
		t.Errorf("the provider saw %v, want %v (its end_session, then a new login)", idpPaths, want)
	}
	for _, r := range idp {
		if q, _ := url.ParseQuery(r.Query); r.Path == "/oidc/logout" && q.Get("post_logout_redirect_uri") != e.site+"/" {
			t.Errorf("the provider's end_session got post_logout_redirect_uri %q, want %s/", q.Get("post_logout_redirect_uri"), e.site)
		}
	}
	if c := e.cookie(e.session); c != nil {
		t.Errorf("the session cookie survived the logout")
	}

	// The provider really asks again: another user can sign in.
	e.click("#login-bob", isApp)
	if v := e.app(); v.User != "bob@example.com" || v.Headers["X-Forwarded-User"] != "auth0|bob" {
		t.Errorf("after signing in again as bob the app shows %q (%q)", v.User, v.Headers["X-Forwarded-User"])
	}
}

func TestExpiredSessionAPIGets401JSON(t *testing.T) {
	e := newEnv(t, options{})
	e.signIn("alice")

	if r := e.fetch("/api/whoami"); r.Status != http.StatusOK || !strings.Contains(r.Body, `"user":"auth0|alice"`) {
		t.Fatalf("signed in, fetch /api/whoami got %d %s", r.Status, r.Body)
	}

	check := func(when string) {
		t.Helper()
		r := e.fetch("/api/whoami")
		if r.Status != http.StatusUnauthorized || r.Redirected {
			t.Errorf("%s, fetch /api/whoami got %d (redirected %v, at %s), want 401 without a redirect", when, r.Status, r.Redirected, r.URL)
		}
		var body struct {
			Error string `json:"error"`
		}
		if !strings.HasPrefix(r.ContentType, "application/json") || json.Unmarshal([]byte(r.Body), &body) != nil || body.Error != "unauthenticated" {
			t.Errorf("%s, fetch /api/whoami got %q: %s, want JSON with \"error\":\"unauthenticated\"", when, r.ContentType, r.Body)
		}
	}

	// What an expired or rotated-away session looks like to the module: a cookie it cannot
	// open. It is treated as no session, and cleared.
	_, err := chromedp.Call(e.ctx, network.SetCookie, network.SetCookieParams{
		Name: e.session, Value: "v1.expired-or-tampered-session", URL: e.site + "/",
		Path: "/", HTTPOnly: new(true), SameSite: network.CookieSameSiteLax,
	})
	if err != nil {
		t.Fatalf("replacing the session cookie: %v", err)
	}
	check("with a session cookie that does not open")
	if c := e.cookie(e.session); c != nil {
		t.Errorf("the module did not clear the session cookie that does not open (value %q)", c.Value)
	}

	// A page navigation signs in again (the provider still has alice's session), and then the
	// session cookie goes, as when it expires in the browser.
	e.navigate(e.site+"/", isApp)
	if v := e.app(); v.User != "alice@example.com" {
		t.Fatalf("signing in again shows %q", v.User)
	}
	if _, err := chromedp.Call(e.ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: e.session, URL: e.site + "/"}); err != nil {
		t.Fatalf("deleting the session cookie: %v", err)
	}
	check("without a session cookie")

	// A navigation, unlike the API call, is sent to the provider.
	before := e.idpLog.count(http.MethodGet, "/authorize")
	e.navigate(e.site+"/", isApp)
	if e.idpLog.count(http.MethodGet, "/authorize") != before+1 {
		t.Errorf("a page navigation without a session did not go to the provider")
	}
}
