package caddymodule

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Authorization on every request: the handler serving a request decides, each time, whether
// the session may have it — through real Caddy, with one site, several routes and one login.

// oidcBlock is an oidc_auth block for the test provider with extra options.
func oidcBlock(extra string) string {
	return `oidc_auth {
		issuer $ISSUER
		client_id $CLIENT_ID
		client_secret $CLIENT_SECRET
		session_secret $SECRET
		cookie {
			insecure
		}
		` + extra + `
	}`
}

// routesSite is a site whose /admin/* and /reports/* routes carry their own rules in front
// of the same application as the rest of the site.
func routesSite(admin, reports, site string) string {
	return `
	handle /admin/* {
		` + oidcBlock(admin) + `
		reverse_proxy $UPSTREAM
	}
	handle /reports/* {
		` + oidcBlock(reports) + `
		reverse_proxy $UPSTREAM
	}
	handle {
		` + oidcBlock(site) + `
		reverse_proxy $UPSTREAM
	}`
}

// as signs h's browser in as user and reports the status of a navigation to path.
func (h *harness) statusAt(path string) int {
	h.t.Helper()
	return h.browse(path).status
}

func TestAStricterRouteRefusesASessionFromTheSitesLogin(t *testing.T) {
	h := newCaddyfileHarness(t, routesSite("allow {\n\t\t\tgroups admins\n\t\t}", "", ""), nil)
	h.login("alice") // signs in at the site's route, which admits everyone
	res := h.browse("/admin/panel")
	if res.status != http.StatusForbidden || h.upstream.count() != 1 {
		t.Fatalf("alice at /admin/: %d (upstream hits %d), want 403 and only the site's request", res.status, h.upstream.count())
	}
	h.impAudit(evAccessDenied, map[string]string{"subject": "auth0|alice", "reason": "not in an allowed group"})
	if s := h.statusAt("/elsewhere"); s != http.StatusOK {
		t.Errorf("the same session elsewhere: %d", s)
	}
	admin := h.impOtherBrowser()
	admin.login("admin")
	if e, ok := admin.browse("/admin/panel").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|admin" {
		t.Errorf("an admin at /admin/ was not let through")
	}
}

func TestRouteMatrix(t *testing.T) {
	site := routesSite("allow {\n\t\t\tgroups admins\n\t\t}",
		"allow {\n\t\t\texpression `\"staff\" in claims.groups || \"executive\" in claims.roles`\n\t\t}",
		"session_claims roles\n\t\tallow {\n\t\t\tdomains example.com\n\t\t}")
	for _, tc := range []struct {
		user                 string
		admin, reports, home int
	}{
		{"alice", 403, 200, 200},   // staff
		{"carol", 403, 200, 200},   // an executive
		{"admin", 200, 403, 200},   // admins, not staff
		{"mallory", 403, 403, 403}, // another domain: nowhere, not even where she signed in
	} {
		t.Run(tc.user, func(t *testing.T) {
			h := newCaddyfileHarness(t, site, func(c *devidp.Config) {})
			h.idp.SetAutoLogin(tc.user, "")
			for _, step := range []struct {
				path string
				want int
			}{{"/", tc.home}, {"/admin/x", tc.admin}, {"/reports/q", tc.reports}, {"/", tc.home}, {"/admin/y", tc.admin}} {
				if got := h.statusAt(step.path); got != step.want {
					t.Errorf("%s at %s: %d, want %d", tc.user, step.path, got, step.want)
				}
			}
		})
	}
}

func TestARuleNeedingAClaimTheSessionLacksDenies(t *testing.T) {
	// The site's login keeps no roles: /reports/ cannot tell, so it refuses.
	h := newCaddyfileHarness(t, routesSite("", "allow {\n\t\t\texpression `\"executive\" in claims.roles`\n\t\t}", ""), nil)
	h.idp.SetAutoLogin("carol", "")
	if s := h.statusAt("/"); s != http.StatusOK {
		t.Fatalf("%d", s)
	}
	if s := h.statusAt("/reports/q"); s != http.StatusForbidden {
		t.Errorf("a rule over a claim the session does not keep: %d, want 403", s)
	}
}

func TestAnImpersonatedSessionNeedsAnImpersonationBlockWhereverItGoes(t *testing.T) {
	site := routesSite("", "", "impersonation {\n\t\t\tconfirm off\n\t\t\timpersonators auth0|admin\n\t\t}")
	h := newCaddyfileHarness(t, site, func(c *devidp.Config) { c.AdminToken = testAdminToken })
	res := h.browse(h.impLink("alice", "admin", impParams{Scope: "openid profile email"}))
	if e, ok := res.echo(); !ok || e.Headers.Get("X-Forwarded-Impersonated") != "true" {
		t.Fatalf("the impersonation did not sign in at the site's route: %d %.200s", res.status, res.body)
	}
	if res := h.browse("/admin/x"); res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
		t.Fatalf("an impersonated session at a route without impersonation: %d", res.status)
	}
	h.impAudit(evAccessDenied, map[string]string{"subject": "auth0|alice", "impersonator": "auth0|admin",
		"reason": "impersonation is not enabled here"})
}

func TestTheImpersonationPolicyHoldsOnEveryRequest(t *testing.T) {
	site := routesSite("impersonation {\n\t\t\tconfirm off\n\t\t\timpersonators auth0|someone-else\n\t\t}", "",
		"impersonation {\n\t\t\tconfirm off\n\t\t\timpersonators auth0|admin\n\t\t}")
	h := newCaddyfileHarness(t, site, func(c *devidp.Config) { c.AdminToken = testAdminToken })
	if _, ok := h.browse(h.impLink("alice", "admin", impParams{Scope: "openid profile email"})).echo(); !ok {
		t.Fatal("the impersonation did not sign in")
	}
	if s := h.statusAt("/admin/x"); s != http.StatusForbidden {
		t.Fatalf("a route whose impersonators do not include the admin: %d", s)
	}
	h.impAudit(evAccessDenied, map[string]string{"reason": "impersonation: impersonator not allowed"})
}

func TestRequestExpressionsAreDecidedOnEveryRequest(t *testing.T) {
	site := `
	` + oidcBlock("allow {\n\t\t\texpression `!request.path.startsWith(\"/admin\") || \"admins\" in claims.groups`\n\t\t}") + `
	reverse_proxy $UPSTREAM`
	for _, tc := range []struct {
		user        string
		home, admin int
	}{{"alice", 200, 403}, {"admin", 200, 200}} {
		t.Run(tc.user, func(t *testing.T) {
			h := newCaddyfileHarness(t, site, nil)
			h.idp.SetAutoLogin(tc.user, "")
			for _, step := range []struct {
				path string
				want int
			}{{"/", tc.home}, {"/admin/x", tc.admin}, {"/other", tc.home}, {"/admin/y", tc.admin}, {"/", tc.home}} {
				if got := h.statusAt(step.path); got != step.want {
					t.Errorf("%s at %s: %d, want %d", tc.user, step.path, got, step.want)
				}
			}
		})
	}
	t.Run("the method and the remote address", func(t *testing.T) {
		h := newCaddyfileHarness(t, `
	`+oidcBlock("allow {\n\t\t\texpression `request.method == \"GET\" && request.remote_ip == \"127.0.0.1\"`\n\t\t}")+`
	reverse_proxy $UPSTREAM`, nil)
		h.login("alice")
		if res := h.api(http.MethodGet, "/x"); res.status != http.StatusOK {
			t.Errorf("GET: %d", res.status)
		}
		if res := h.api(http.MethodPost, "/x"); res.status != http.StatusForbidden {
			t.Errorf("POST: %d, want 403", res.status)
		}
	})
}

func TestASessionBelongsToItsProviderAndClient(t *testing.T) {
	// /partners/* is configured for another client of the same provider: alice's session
	// from the site's client is not its to accept.
	site := `
	handle /partners/* {
		oidc_auth {
			issuer $ISSUER
			client_id partners
			client_secret partners-secret
			session_secret $SECRET
			cookie {
				insecure
			}
		}
		reverse_proxy $UPSTREAM
	}
	handle {
		` + oidcBlock("") + `
		reverse_proxy $UPSTREAM
	}`
	h := newCaddyfileHarness(t, site, nil)
	h.login("alice")
	hits := h.upstream.count()
	res := h.api(http.MethodGet, "/partners/x")
	if res.status != http.StatusUnauthorized || h.upstream.count() != hits {
		t.Fatalf("a session of another client at /partners/: %d", res.status)
	}
	h.impAudit(evSessionRejected, map[string]string{"subject": "auth0|alice", "reason": "issued for another provider or client"})
}

func TestACachedDecisionNeverOutlivesItsSession(t *testing.T) {
	h := newCaddyfileHarness(t, oidcBlock("session_lifetime 10m\n\t\tallow {\n\t\t\tgroups staff\n\t\t}")+"\n\treverse_proxy $UPSTREAM", nil)
	h.login("alice")
	if s := h.statusAt("/"); s != http.StatusOK {
		t.Fatalf("%d", s)
	}
	h.clock.Advance(11 * time.Minute)
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("after the session's end: %d", res.status)
	}
	if n := h.handler.decisions.len(); n != 1 {
		t.Errorf("%d decisions kept", n)
	}
}
