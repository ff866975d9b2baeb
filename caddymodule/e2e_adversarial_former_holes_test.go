package caddymodule

import (
	"net/http"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Former holes: adversarial cases the module got wrong when the suite was written, each of
// which failed until its fix.

// userinfo answers every method: serveUserinfo never looks at r.Method, so DELETE, PUT and
// the rest get the identity (200) with a session and 401 without one, where every other
// endpoint answers a method it does not take with 405.
func TestAdversarialFormerHoleUserinfoTakesAnyMethod(t *testing.T) {
	site := advSite{name: "defaults"}
	type methodCase struct {
		method  string
		session bool
	}
	advEach(t, []methodCase{{http.MethodDelete, false}, {http.MethodPut, false}, {http.MethodPatch, false},
		{http.MethodDelete, true}, {http.MethodPut, true}},
		func(c methodCase) (advSite, string) {
			if c.session {
				return site, c.method + " with a session"
			}
			return site, c.method + " without a session"
		}, func(t *testing.T, h *harness, c methodCase) {
			if c.session {
				h.login("alice")
			}
			m := h.advMark()
			res := h.advSend(advReq{method: c.method, path: "/oauth2/userinfo", header: [][2]string{{"Accept", "application/json"}}})
			h.advCheck(m, res, advWant{status: http.StatusMethodNotAllowed})
		})
}

// The handler applies its allow rules, and to an impersonated session its impersonation
// policy, on every request it lets through (authorize, in ServeHTTP), but not on the requests
// its own endpoints serve: userinfo answers the identity of a session the site refuses (allow
// rules changed since the login, or another route's handler issued it), and
// impersonation/state mints a signed state for it. Both should answer as a protected path
// does: 403 and an access_denied event.
func TestAdversarialFormerHoleEndpointsSkipAuthorization(t *testing.T) {
	site := advSite{name: "admins only, state signed", cfg: func(c *Handler) {
		c.Allow = &AllowConfig{Groups: []string{"admins"}}
		c.Impersonation = &ImpersonationConfig{State: "signed", Impersonators: []string{"auth0|admin"}}
	}}
	type authzCase struct {
		name    string
		session func(h *harness) *session.Session
		path    string
	}
	staff := func(h *harness) *session.Session {
		s := advSessionOf(h, "auth0|admin", "admin@example.com", "staff") // the admin, moved out of admins
		s.ID = randomToken(16)
		return s
	}
	mallorys := func(h *harness) *session.Session { // alice, impersonated by someone no longer allowed
		s := advSessionOf(h, "auth0|alice", "alice@example.com", "admins")
		s.ID, s.Impersonated, s.ImpersonatorID = randomToken(16), true, "auth0|mallory"
		return s
	}
	advEach(t, []authzCase{
		{"userinfo, a session the allow rules refuse", staff, "/oauth2/userinfo"},
		{"impersonation/state, a session the allow rules refuse", staff, "/oauth2/impersonation/state"},
		{"userinfo, an impersonated session the policy refuses", mallorys, "/oauth2/userinfo"},
	}, func(c authzCase) (advSite, string) { return site, c.name }, func(t *testing.T, h *harness, c authzCase) {
		cookie := h.handler.jar.Base + "=" + advSeal(h, session.PurposeSession, c.session(h))
		send := func(path string) result {
			return h.advSend(advReq{path: path, bare: true, header: [][2]string{{"Accept", "application/json"}, {"Cookie", cookie}}})
		}
		m := h.advMark()
		h.advCheck(m, send("/app"), advWant{status: http.StatusForbidden, events: evAccessDenied}) // the control
		m = h.advMark()
		h.clock.Advance(time.Second)
		res := send(c.path)
		if res.status != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403 as /app", c.path, res.status, res.body)
		}
		if h.upstream.count() != m.upstream {
			t.Error("the application was reached")
		}
	})
}

// impersonation/end refuses a POST whose Origin or Sec-Fetch-Site names another site, but not
// one whose only sign of where it came from is a Referer on another site, which logout treats
// as from elsewhere (foreignReferer) and the README's "a POST from another site is refused"
// covers: such a post ends the impersonation (303, impersonation_ended).
func TestAdversarialFormerHoleImpersonationEndTrustsAForeignReferer(t *testing.T) {
	site := advSite{name: "impersonation on, no confirmation", cfg: advImp(ImpersonationConfig{Confirm: boolPtr(false)})}
	advEach(t, []string{"https://evil.example/page", "http://127.0.0.1.evil.example/"}, func(ref string) (advSite, string) {
		return site, "Referer " + ref
	}, func(t *testing.T, h *harness, ref string) {
		h.advImpersonate()
		m := h.advMark()
		res := h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end", header: [][2]string{{"Referer", ref}}})
		h.advCheck(m, res, advWant{status: http.StatusForbidden})
		if got := h.impUserinfo()["impersonated"]; got != true {
			t.Errorf("the impersonation ended")
		}
	})
}

// The callback takes access and ID tokens from the query of a GET, a transport no provider uses
// for tokens (a token response goes in the fragment or a form post: OAuth 2.0 Multiple
// Response Type Encoding Practices 2.1, "the query encoding MUST NOT be used") and the SPEC does
// not list: bearer tokens in a request URI land in access logs, browser history and Referer
// headers, and a plain link becomes enough to deliver them. It signs the browser in (303,
// impersonation_started) where it should refuse (400).
func TestAdversarialFormerHoleTokensInTheQuery(t *testing.T) {
	runAdvTokenCases(t, []advTokenCase{
		{name: "a token response in the query of a GET",
			attack: func(h *harness, mark func()) result {
				f := h.impFragment("alice", "admin")
				mark()
				return h.advSend(advReq{path: "/oauth2/callback?" + f.Encode()})
			},
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "query"}},
	})
}
