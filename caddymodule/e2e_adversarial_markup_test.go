package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Reflected markup: whatever a request or a provider's answer carries into a page (error codes,
// error_description, state, code, iss, return paths, names from claims) is shown escaped, or
// not at all.

const advScript = `<script>alert(1)</script>`

// advMarkupUsers are the demo users plus eve, whose profile is markup, and root, an
// administrator whose email is.
func advMarkupUsers(c *devidp.Config) {
	c.Users = append(devidp.DemoUsers(),
		devidp.User{Key: "eve", ID: "auth0|eve", Email: `eve"><img src=x onerror=alert(1)>@example.com`,
			EmailVerified: true, Name: `Eve ` + advScript, Nickname: `<img src=x onerror=alert(1)>`},
		devidp.User{Key: "root", ID: "auth0|root", Email: "root" + advScript + "@example.com", EmailVerified: true, Admin: true})
}

func TestAdversarialReflectedMarkup(t *testing.T) {
	// own sends q to the callback with the state of a login this browser started.
	own := func(q url.Values) func(*harness) advReq {
		return func(h *harness) advReq {
			state, _ := h.startAttempt()
			q.Set("state", state)
			return advReq{path: "/oauth2/callback?" + q.Encode()}
		}
	}
	// foreign sends q to the callback with the state of another browser's login.
	foreign := func(q url.Values) func(*harness) advReq {
		return func(h *harness) advReq {
			state, _ := h.impOtherBrowser().startAttempt()
			q.Set("state", state)
			return advReq{path: "/oauth2/callback?" + q.Encode()}
		}
	}
	plain := func(r advReq) func(*harness) advReq { return func(*harness) advReq { return r } }
	callback := func(q url.Values) func(*harness) advReq {
		return plain(advReq{path: "/oauth2/callback?" + q.Encode()})
	}
	fixed := advSite{name: "state fixed", cfg: advImp(ImpersonationConfig{State: "fixed", StateValue: "fixed-state-value-0123456789"})}
	deny := advSite{name: "unauthenticated deny", cfg: func(c *Handler) { c.Unauthenticated = "deny" }}
	type markupCase struct {
		name  string
		site  advSite        // default: impersonation on, users with markup
		setup func(*harness) // before the mark
		req   func(*harness) advReq
		do    func(*harness) result // instead of req, for an attack of several requests
		want  advWant
		raw   []string // must not appear in the answer
		shown []string // must appear in it
	}
	cases := []markupCase{
		{name: "a non-standard error code",
			req:  callback(url.Values{"error": {advScript}}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "provider error: unknown_error"},
			raw:  []string{"<script", "alert(1)"}, shown: []string{"unknown_error"}},
		{name: "an error code breaking out of an attribute",
			req:  callback(url.Values{"error": {`"><img src=x onerror=alert(1)>`}}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "provider error: unknown_error"},
			raw:  []string{"<img", "onerror"}},
		{name: "error_description answering this browser's login",
			req:  own(url.Values{"error": {"access_denied"}, "error_description": {advScript}}),
			want: advWant{status: http.StatusForbidden, events: evLoginFailed, reason: "provider error: access_denied"},
			raw:  []string{advScript}, shown: []string{"&lt;script&gt;alert(1)&lt;/script&gt;"}},
		{name: "error_description breaking out of an attribute, this browser's login",
			req:  own(url.Values{"error": {"invalid_request"}, "error_description": {`"><svg/onload=alert(1)>`}}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "provider error: invalid_request"},
			raw:  []string{"<svg"}, shown: []string{"&#34;&gt;&lt;svg/onload=alert(1)&gt;"}},
		{name: "error_description closing the paragraph with a javascript: link",
			req: own(url.Values{"error": {"server_error"},
				"error_description": {`</p><a href="javascript:alert(1)">Sign in again</a>`}}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "provider error: server_error"},
			raw:  []string{`<a href="javascript`, "</p><a"}},
		{name: "error_description with another browser's state is not shown",
			req:  foreign(url.Values{"error": {"access_denied"}, "error_description": {"Call 0800 " + advScript}}),
			want: advWant{status: http.StatusForbidden, events: evLoginFailed, reason: "provider error: access_denied"},
			raw:  []string{"0800", "script"}},
		{name: "error_description without a state is not shown",
			req:  callback(url.Values{"error": {"access_denied"}, "error_description": {"Call 0800 " + advScript}}),
			want: advWant{status: http.StatusForbidden, events: evLoginFailed, reason: "provider error: access_denied"},
			raw:  []string{"0800", "script"}},
		{name: "error_description to an API client answering its own login",
			req: func(h *harness) advReq {
				r := own(url.Values{"error": {"access_denied"}, "error_description": {advScript}})(h)
				r.header = [][2]string{{"Accept", "application/json"}}
				return r
			},
			want: advWant{status: http.StatusForbidden, events: evLoginFailed, reason: "provider error: access_denied"},
			raw:  []string{"<script", `\u003cscript`}, shown: []string{`"error":"provider_refused"`}},
		{name: "a state of markup under state fixed", site: fixed,
			req: callback(url.Values{"code": {"x"}, "state": {advScript}}),
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied,
				reason: "state does not match the fixed value"},
			raw: []string{"<script", "alert(1)"}},
		{name: "a code of markup",
			req:  callback(url.Values{"code": {advScript}}),
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "code refused by the provider"},
			raw:  []string{"<script", "alert(1)"}},
		{name: "an iss of markup",
			req: callback(url.Values{"code": {"x"}, "iss": {advScript}}),
			want: advWant{status: http.StatusForbidden, events: evImpersonationDenied,
				reason: "iss parameter names another issuer"},
			raw: []string{"<script", "alert(1)"}},
		{name: "the relay page with parameters of markup",
			req:  callback(url.Values{"x": {advScript}, "rd": {advScript}}),
			want: advWant{status: http.StatusOK}, raw: []string{"<script>alert", "alert(1)"}, shown: []string{`id="relay"`}},
		{name: "the logout question with a return path of markup", setup: func(h *harness) { h.login("alice") },
			req: plain(advReq{path: "/oauth2/logout?rd=" + url.QueryEscape(`/"><script>alert(1)</script>`),
				origin: "https://evil.example"}),
			want: advWant{status: http.StatusOK}, raw: []string{"<script>alert", `"><`}, shown: []string{`id="signout"`}},
		{name: "a return path of markup, in the redirect that ends the login",
			do: func(h *harness) result {
				res := h.advSend(advReq{path: "/oauth2/start?rd=" + url.QueryEscape(`/"><script>alert(1)</script>`)})
				return h.advFollow(h.t, h.advFollow(h.t, res, http.StatusFound), http.StatusFound)
			},
			want: advWant{status: http.StatusSeeOther, events: evLogin}, raw: []string{"<script>alert"}},
		{name: "an unauthenticated path of markup, unauthenticated deny", site: deny,
			req:  plain(advReq{path: "/" + url.PathEscape(advScript)}),
			want: advWant{status: http.StatusUnauthorized}, raw: []string{"<script", "alert(1)"}},
		{name: "emails of markup, the target's and the impersonator's, on the confirmation page",
			req: func(h *harness) advReq {
				loc := h.impCallback(h.impLink("eve", "root", impParams{Scope: "openid profile email"}))
				return advReq{path: strings.TrimPrefix(loc.String(), h.siteURL)}
			},
			want: advWant{status: http.StatusOK},
			raw:  []string{"<img", "<script>alert"}, shown: []string{`eve&#34;&gt;&lt;img src=x onerror=alert(1)&gt;@example.com`}},
		{name: "a name of markup in userinfo's JSON", setup: func(h *harness) { h.login("eve") },
			req:  plain(advReq{path: "/oauth2/userinfo", header: [][2]string{{"Accept", "application/json"}}}),
			want: advWant{status: http.StatusOK}, raw: []string{"<script", "<img"}, shown: []string{`\u003cscript\u003e`}},
	}
	markupSite := advSite{name: "impersonation on, users with markup", cfg: advImp(ImpersonationConfig{}), idp: advMarkupUsers}
	advEach(t, cases, func(c markupCase) (advSite, string) {
		if c.site.name == "" {
			return markupSite, c.name
		}
		return c.site, c.name
	}, func(t *testing.T, h *harness, tc markupCase) {
		if tc.setup != nil {
			tc.setup(h)
		}
		m := h.advMark()
		var res result
		if tc.do != nil {
			res = tc.do(h)
		} else {
			res = h.advSend(tc.req(h))
		}
		h.advCheck(m, res, tc.want)
		for _, s := range tc.raw {
			if strings.Contains(res.body, s) {
				t.Errorf("the answer carries %q: %.600s", s, res.body)
			}
		}
		for _, s := range tc.shown {
			if !strings.Contains(res.body, s) {
				t.Errorf("the answer lacks %q: %.600s", s, res.body)
			}
		}
		if ct := res.header.Get("Content-Type"); res.body != "" && !strings.HasPrefix(ct, "text/html") &&
			!strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		if redirect := res.status/100 == 3; !redirect && res.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("X-Content-Type-Options %q", res.header.Get("X-Content-Type-Options"))
		}
	})
}
