package browsertest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func TestImpersonationFromTheAdminPage(t *testing.T) {
	for _, tc := range []struct {
		name string
		imp  impersonation
		// how the authorization response reaches the callback: the method and Sec-Fetch-Site
		// of the request that the confirmation page answers
		method, fetchSite string
	}{
		{"response type code, mode GET", impersonation{"alice", "code", "get"}, http.MethodGet, "cross-site"},
		{"response type token: the fragment relay page posts the tokens", impersonation{"alice", "token", "get"}, http.MethodPost, "same-origin"},
		{"response mode POST: a cross-site form post", impersonation{"alice", "code", "post"}, http.MethodPost, "cross-site"},
		{"response type token, mode POST", impersonation{"alice", "token", "post"}, http.MethodPost, "cross-site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, options{})
			e.openAdminPage()
			before := e.siteLog.len()
			e.requestLink(tc.imp)
			fragment := tc.imp.responseType == "token" && tc.imp.responseMode == "get"
			var relayAddress func() string
			if fragment {
				relayAddress = e.watchRelay()
			}
			e.followLink()

			c := e.confirmation()
			// Auth0 vouches for no impersonator email: the page names the admin by ID and shows
			// the email as not verified.
			if c.Target != "alice@example.com" || c.Impersonator != "auth0|admin" || c.Unverified != "(email admin@example.com, not verified)" {
				t.Errorf("the confirmation page asks about %q impersonated by %q %q, want alice@example.com by auth0|admin (email admin@example.com, not verified)",
					c.Target, c.Impersonator, c.Unverified)
			}
			if host := strings.TrimPrefix(e.site, "http://"); c.Host != host {
				t.Errorf("the confirmation page names the site %q, want %q", c.Host, host)
			}
			if !strings.HasPrefix(c.URL, e.site+"/oauth2/callback") {
				t.Errorf("the confirmation page is at %s, want the site's callback", c.URL)
			}
			var answered *request
			for _, r := range e.siteLog.since(before) {
				if r.Path == "/oauth2/callback" {
					answered = &r
				}
			}
			if answered == nil || answered.Method != tc.method || answered.FetchSite != tc.fetchSite {
				t.Errorf("the callback request that the confirmation answers: %+v, want %s from %s", answered, tc.method, tc.fetchSite)
			}
			if fragment {
				if addr := relayAddress(); addr != e.site+"/oauth2/callback" {
					t.Errorf("while the relay page posted the tokens, its address was %s, want %s/oauth2/callback", addr, e.site)
				}
			}
			if tc.imp.responseType == "token" {
				if c.Hash != "" || strings.Contains(c.URL, "access_token") {
					t.Errorf("the tokens are left in the address bar: %s", c.URL)
				}
				hist, err := chromedp.Run(e.ctx, chromedp.NavigationEntries())
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range hist.Entries {
					if strings.Contains(h.URL, "access_token") || strings.Contains(h.URL, "id_token") {
						t.Errorf("the tokens are left in the history: %s", h.URL)
					}
				}
			}
			if s := e.cookie(e.session); s != nil {
				t.Errorf("a session cookie exists before the confirmation")
			}
			if e.cookie(e.session+"_confirm") == nil {
				t.Errorf("no confirmation cookie; the site's cookies: %v", cookieNames(e.siteCookies()))
			}

			e.click("#continue", onSitePage)
			v := e.app()
			if v.User != "alice@example.com" || v.Impersonator != "admin@example.com" || !v.Banner || !v.EndButton {
				t.Errorf("after Continue the app shows %q impersonated by %q (banner %v, end button %v), want alice@example.com by admin@example.com",
					v.User, v.Impersonator, v.Banner, v.EndButton)
			}
			v.checkHeaders(t, map[string]string{
				"X-Forwarded-User":                          "auth0|alice",
				"X-Forwarded-Email":                         "alice@example.com",
				"X-Forwarded-Impersonated":                  "true",
				"X-Forwarded-Impersonator":                  "auth0|admin",
				"X-Forwarded-Impersonator-Email-Unverified": "admin@example.com",
				"X-Forwarded-Impersonator-Email":            "",
			})
			if e.cookie(e.session) == nil {
				t.Errorf("no session cookie after Continue")
			}
			if e.cookie(e.session+"_confirm") != nil {
				t.Errorf("the confirmation cookie outlived the confirmation")
			}
		})
	}
}

func TestConfirmationPage(t *testing.T) {
	t.Run("Cancel leaves no session", func(t *testing.T) {
		e := newEnv(t, options{})
		e.openAdminPage()
		e.impersonate(impersonation{"alice", "code", "get"})
		e.click("#cancel", onSitePage)
		if title := eval[string](e.tab, `(document.getElementById("title") || {}).textContent || document.title`); title != "Impersonation cancelled" {
			t.Errorf("after Cancel the page says %q", title)
		}
		if s := e.cookie(e.session); s != nil {
			t.Errorf("Cancel left a session cookie")
		}
		if e.cookie(e.session+"_confirm") != nil {
			t.Errorf("Cancel left the confirmation cookie")
		}

		// The site is not reachable without a login: the browser goes to the provider, which
		// still knows the administrator, so the app shows the administrator — not alice.
		logins := e.idpLog.count(http.MethodGet, "/authorize")
		e.navigate(e.site+"/", isApp)
		if e.idpLog.count(http.MethodGet, "/authorize") != logins+1 {
			t.Errorf("after Cancel the site was reachable without going to the provider")
		}
		if v := e.app(); v.User != "admin@example.com" || v.Banner || v.Headers["X-Forwarded-Impersonated"] != "false" {
			t.Errorf("after Cancel and a new login the app shows %q (banner %v, impersonated %q), want admin@example.com, not impersonated",
				v.User, v.Banner, v.Headers["X-Forwarded-Impersonated"])
		}
	})

	t.Run("another site cannot frame it", func(t *testing.T) {
		e := newEnv(t, options{})
		// A fresh impersonation link, followed outside the browser as far as the callback URL
		// that the provider sends the browser to.
		link, err := e.idp.Impersonate(devidp.ImpersonateParams{
			UserID: "alice", ImpersonatorID: "admin", ClientID: clientID, Scope: impersonationScope})
		if err != nil {
			t.Fatal(err)
		}
		callback := followOnce(t, link)
		if !strings.HasPrefix(callback, e.site+"/oauth2/callback?code=") {
			t.Fatalf("the link leads to %s, want the site's callback with a code", callback)
		}
		control := strings.Replace(e.other, "127.0.0.1", "localhost", 1) + "/framable"
		framer := e.other + "/frame?" + url.Values{"src": {callback}, "control": {control}}.Encode()
		before := e.siteLog.len()
		e.navigate(framer, `window.framesLoaded === 2`)

		var framed bool
		for _, r := range e.siteLog.since(before) {
			if r.Method == http.MethodGet && r.Path == "/oauth2/callback" && r.FetchDest == "iframe" {
				framed = true
			}
			if r.Path == "/oauth2/confirm" {
				t.Errorf("the framed page posted its confirmation: %+v", r)
			}
		}
		if !framed {
			t.Fatalf("the iframe did not request the callback; the site saw:\n%s", e.siteLog)
		}

		// Chromium runs a cross-site iframe as a target of its own: look inside each.
		victim := e.frameDocument(callback)
		if victim.HasContinue || strings.HasPrefix(victim.URL, e.site) {
			t.Errorf("the framed confirmation page rendered: the frame holds %s (Continue button: %v)", victim.URL, victim.HasContinue)
		}
		if !strings.HasPrefix(victim.URL, "chrome-error://") {
			t.Errorf("the frame holds %s, want Chromium's error page for a blocked frame", victim.URL)
		}
		if ctl := e.frameDocument(control); ctl.URL != control || !ctl.HasFramable {
			t.Errorf("the control frame holds %s (its content shown: %v): the check above proves nothing", ctl.URL, ctl.HasFramable)
		}
		if doc := eval[bool](e.tab, `document.getElementById("victim").contentDocument === null`); !doc {
			t.Errorf("the framing page can read the frame's document")
		}
		if c := e.cookie(e.session + "_confirm"); c != nil {
			t.Errorf("the framed response planted a confirmation cookie")
		}
		if c := e.cookie(e.session); c != nil {
			t.Errorf("the framed response planted a session cookie")
		}
	})
}

func TestEndImpersonationRestoresTheAdministratorsSession(t *testing.T) {
	e := newEnv(t, options{})
	if v := e.signIn("admin"); v.User != "admin@example.com" {
		t.Fatalf("signed in as the administrator, the app shows %q", v.User)
	}
	own := e.sessionID()

	e.openAdminPage()
	if n := e.idpLog.count(http.MethodPost, "/login"); n != 1 {
		t.Errorf("the admin page asked the administrator to sign in to the provider again (%d logins)", n)
	}
	e.impersonate(impersonation{"alice", "code", "get"})
	e.click("#continue", onSitePage)
	if v := e.app(); v.User != "alice@example.com" || v.Impersonator != "admin@example.com" {
		t.Fatalf("after Continue the app shows %q impersonated by %q", v.User, v.Impersonator)
	}
	if e.cookie(e.session+"_stash") == nil {
		t.Errorf("the administrator's own session was not kept aside; the site's cookies: %v", cookieNames(e.siteCookies()))
	}

	logins := e.idpLog.count(http.MethodGet, "/authorize")
	e.click("#end-impersonation", onSitePage)
	v := e.app()
	if v.User != "admin@example.com" || v.Banner {
		t.Errorf("after ending the impersonation the app shows %q (banner %v), want admin@example.com", v.User, v.Banner)
	}
	v.checkHeaders(t, map[string]string{
		"X-Forwarded-User":               "auth0|admin",
		"X-Forwarded-Email":              "admin@example.com",
		"X-Forwarded-Impersonated":       "false",
		"X-Forwarded-Impersonator":       "",
		"X-Forwarded-Impersonator-Email": "",
	})
	if n := e.idpLog.count(http.MethodGet, "/authorize"); n != logins {
		t.Errorf("ending the impersonation went through a new login (%d more /authorize)", n-logins)
	}
	if id := e.sessionID(); id != own {
		t.Errorf("ending the impersonation gave session %q, want the administrator's own %q back", id, own)
	}
	if e.cookie(e.session+"_stash") != nil {
		t.Errorf("the kept-aside session cookie outlived the impersonation")
	}
}
