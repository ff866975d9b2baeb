package caddymodule

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Open redirects: every return path a client can choose (start's, logout's and
// impersonation/end's rd, and the path of an unauthenticated navigation) must end on this site.
// Each payload is tried on each of them; a same-site path is the control, kept as given.

// advReturns are the payloads, as the module receives them (they are query-escaped on the
// wire), and where the browser must be sent: "/" for every one that is not a plain path here.
var advReturns = []struct{ name, rd, want string }{
	{"a same-site path with a query (control)", "/app/page?x=1", "/app/page?x=1"},
	{"//host", "//evil.example/x", "/"},
	{"///host", "///evil.example", "/"},
	{`/\host`, `/\evil.example`, "/"},
	{`/\/host`, `/\/evil.example`, "/"},
	{`\\host`, `\\evil.example`, "/"},
	{"//host encoded", "/%2F%2Fevil.example", "/"},
	{"/%2F/host", "/%2F/evil.example", "/"},
	{`/\host encoded`, "/%5Cevil.example", "/"},
	{"an absolute URL", "https://evil.example/", "/"},
	{"a scheme without slashes", "https:evil.example", "/"},
	{"javascript:", "javascript:alert(document.domain)", "/"},
	{"data:", "data:text/html,<script>alert(1)</script>", "/"},
	{"a bare host", "evil.example", "/"},
	{"a leading space", " //evil.example", "/"},
	{"a tab inside //", "/\t/evil.example", "/"},
	{"an encoded tab inside //", "/%09/evil.example", "/"},
	{"CRLF", "/\r\nSet-Cookie: forged=1", "/"},
	{"encoded CRLF", "/%0d%0aSet-Cookie:%20forged=1", "/"},
	{"NUL", "/\x00//evil.example", "/"},
	{"DEL", "/\x7f//evil.example", "/"},
	{"longer than any path", "/" + strings.Repeat("a", 3000), "/"},
}

var advStayLink = regexp.MustCompile(`<a class="button" id="stay" href="([^"]*)">`)

// advReturnEndpoint sends the browser somewhere chosen by rd; send reports the answer and the
// path the browser is sent on to.
type advReturnEndpoint struct {
	name   string
	cfg    func(*Handler)
	idp    func(*devidp.Config)
	setup  func(*harness)
	send   func(t *testing.T, h *harness, rd string) (res result, landed string)
	status int
	events string
}

func advLocation(t *testing.T, res result) string {
	t.Helper()
	loc := res.header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location: %d %.300s", res.status, res.body)
	}
	return loc
}

var advReturnEndpoints = []advReturnEndpoint{
	{name: "start, after the whole login",
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{path: "/oauth2/start?rd=" + url.QueryEscape(rd)})
			res = h.advFollow(t, h.advFollow(t, res, http.StatusFound), http.StatusFound) // the provider, then the callback
			return res, advLocation(t, res)
		},
		status: http.StatusSeeOther, events: evLogin},
	{name: "start with same_site strict, where a page sends the browser on",
		cfg: func(c *Handler) { c.Cookie.SameSite = "strict" },
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{path: "/oauth2/start?rd=" + url.QueryEscape(rd)})
			res = h.advFollow(t, h.advFollow(t, res, http.StatusFound), http.StatusFound)
			to, ok := strings.CutPrefix(res.header.Get("Refresh"), "0; url=")
			if !ok {
				t.Fatalf("no Refresh: %d %q", res.status, res.header.Get("Refresh"))
			}
			if !strings.Contains(res.body, `id="continue" href="`+html.EscapeString(to)+`"`) {
				t.Errorf("the page's Continue does not go to %q: %.600s", to, res.body)
			}
			return res, to
		},
		status: http.StatusOK, events: evLogin},
	{name: "logout without an end_session_endpoint",
		idp: func(c *devidp.Config) { c.DisableEndSession = true }, setup: func(h *harness) { h.login("alice") },
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{path: "/oauth2/logout?rd=" + url.QueryEscape(rd)})
			return res, advLocation(t, res)
		},
		status: http.StatusFound, events: evLogout},
	{name: "logout, post_logout_redirect_uri at the provider",
		setup: func(h *harness) { h.login("alice") },
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{path: "/oauth2/logout?rd=" + url.QueryEscape(rd)})
			loc, err := url.Parse(advLocation(t, res))
			if err != nil || !strings.HasPrefix(loc.String(), h.idpURL) {
				t.Fatalf("logout went to %q, not the provider", res.header.Get("Location"))
			}
			back, ok := strings.CutPrefix(loc.Query().Get("post_logout_redirect_uri"), h.siteURL)
			if !ok {
				t.Fatalf("post_logout_redirect_uri %q is not on the site", loc.Query().Get("post_logout_redirect_uri"))
			}
			return res, back
		},
		status: http.StatusFound, events: evLogout},
	{name: "logout asked from another site, the question page",
		setup: func(h *harness) { h.login("alice") },
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{path: "/oauth2/logout?rd=" + url.QueryEscape(rd), origin: "https://evil.example"})
			m := advStayLink.FindStringSubmatch(res.body)
			if m == nil {
				t.Fatalf("not the question page: %d %.300s", res.status, res.body)
			}
			stay := html.UnescapeString(m[1])
			if action, _ := impForm(t, res.body); action != "/oauth2/logout?rd="+url.QueryEscape(stay) {
				t.Errorf("the page's Sign out posts to %q, its Stay links to %q", action, stay)
			}
			return res, stay
		},
		status: http.StatusOK},
	{name: "impersonation/end",
		cfg: advImp(ImpersonationConfig{Confirm: boolPtr(false)}), setup: (*harness).advImpersonate,
		send: func(t *testing.T, h *harness, rd string) (result, string) {
			res := h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end?rd=" + url.QueryEscape(rd), origin: "self"})
			return res, advLocation(t, res)
		},
		status: http.StatusSeeOther, events: evImpersonationEnded},
}

type advReturnCase struct {
	ep           advReturnEndpoint
	name, rd, to string
}

func TestAdversarialOpenRedirects(t *testing.T) {
	var cases []advReturnCase
	for _, ep := range advReturnEndpoints {
		for _, p := range advReturns {
			cases = append(cases, advReturnCase{ep, p.name, p.rd, p.want})
		}
	}
	advEach(t, cases, func(c advReturnCase) (advSite, string) {
		return advSite{name: c.ep.name, cfg: c.ep.cfg, idp: c.ep.idp}, c.name
	}, func(t *testing.T, h *harness, c advReturnCase) {
		if c.ep.setup != nil {
			c.ep.setup(h)
		}
		m := h.advMark()
		res, landed := c.ep.send(t, h, c.rd)
		h.advCheck(m, res, advWant{status: c.ep.status, events: c.ep.events})
		if landed != c.to {
			t.Errorf("sent on to %q, want %q", landed, c.to)
		}
	})
}

// An unauthenticated navigation saves its own path to return to after the login: a path
// that reads as another host must not become a redirect there.
func TestAdversarialOpenRedirectsThroughTheSavedPath(t *testing.T) {
	type savedPathCase struct{ name, path, want string }
	advEach(t, []savedPathCase{
		{"a plain path (control)", "/app/page?x=1", "/app/page?x=1"},
		{"//host", "//evil.example/x", "/"},
		{"//host encoded", "/%2F%2Fevil.example", "/"},
		{`/\host encoded`, "/%5Cevil.example", "/"},
		{"encoded CRLF", "/%0d%0aSet-Cookie:%20forged=1", "/"},
	}, func(c savedPathCase) (advSite, string) {
		return advSite{name: "defaults"}, c.name
	}, func(t *testing.T, h *harness, c savedPathCase) {
		m := h.advMark()
		res := h.advSend(advReq{path: c.path})
		res = h.advFollow(t, h.advFollow(t, res, http.StatusFound), http.StatusFound)
		h.advCheck(m, res, advWant{status: http.StatusSeeOther, events: evLogin})
		if landed := advLocation(t, res); landed != c.want {
			t.Errorf("sent on to %q, want %q", landed, c.want)
		}
	})
}
