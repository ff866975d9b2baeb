package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Matching identities, through real Caddy: impersonators by exact ID, or by an email only
// where something vouches for it; emails folded in ASCII only; protect by exact subject and
// by domain or subdomain pattern; an impersonation signal the claims mode does not read; and
// what the confirmation page shows of who is who.

// withUsers gives the provider the demo users and these.
func withUsers(extra ...devidp.User) func(*devidp.Config) {
	return func(c *devidp.Config) { c.Users = append(devidp.DemoUsers(), extra...) }
}

// impAuditFlags checks boolean fields of the last audit event called name; a field missing
// from the event fails too.
func (h *harness) impAuditFlags(name string, want map[string]bool) {
	h.t.Helper()
	f, ok := h.lastEvent(name)
	if !ok {
		h.t.Errorf("no %s audit event; events: %v", name, h.events())
		return
	}
	for k, w := range want {
		if got, ok := f[k].(bool); !ok || got != w {
			h.t.Errorf("%s event: %s = %v, want %v (event %v)", name, k, f[k], w, f)
		}
	}
}

// impRefused follows the link and checks the impersonation was refused with 403, for reason,
// with no session and nothing upstream.
func (h *harness) impRefused(link string, want map[string]string) {
	h.t.Helper()
	hits, started := h.upstream.count(), h.audit.FilterMessage(evImpersonationStarted).Len()
	res := h.browse(link)
	if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
		h.t.Fatalf("not refused: %d %.300s", res.status, res.body)
	}
	h.impAudit(evImpersonationDenied, want)
	if h.audit.FilterMessage(evImpersonationStarted).Len() != started {
		h.t.Error("a refused impersonation started")
	}
	h.impNoSession()
	if h.upstream.count() != hits {
		h.t.Error("the upstream was reached")
	}
}

// impSignedIn follows the link (with confirm off) and returns what the upstream saw.
func (h *harness) impSignedIn(link string) echoed {
	h.t.Helper()
	res := h.browse(link)
	e, ok := res.echo()
	if !ok {
		h.t.Fatalf("the impersonation did not sign in: %d %.300s", res.status, res.body)
	}
	return e
}

// A provider administrator whose own, unverified, email is the listed administrator's.
var fakeAdmin = devidp.User{Key: "fakeadmin", ID: "auth0|fakeadmin", Email: "admin@example.com", Admin: true}

func TestImpersonationImpersonatorEmailCountsOnlyWhenVouchedFor(t *testing.T) {
	t.Run("a listed email that nothing vouches for does not admit the admin who claims it", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Impersonators: []string{"admin@example.com"}}),
			withUsers(fakeAdmin))
		h.impRefused(h.impLink("alice", "fakeadmin", impParams{Scope: "openid profile email"}), map[string]string{
			"reason": "impersonator not allowed", "subject": "auth0|alice",
			"impersonator": "auth0|fakeadmin", "impersonator_email": "admin@example.com"})
		h.impAuditFlags(evImpersonationDenied, map[string]bool{"impersonator_email_verified": false})
	})

	t.Run("without a list the app gets the email only as unverified", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), withUsers(fakeAdmin))
		e := h.impSignedIn(h.impLink("alice", "fakeadmin", impParams{}))
		impWantHeaders(t, e, map[string]string{
			"X-Forwarded-User":                          "auth0|alice",
			"X-Forwarded-Impersonator":                  "auth0|fakeadmin",
			"X-Forwarded-Impersonator-Email":            "",
			"X-Forwarded-Impersonator-Email-Unverified": "admin@example.com",
		})
		h.impAudit(evImpersonationStarted, map[string]string{"subject": "auth0|alice",
			"impersonator": "auth0|fakeadmin", "impersonator_email": "admin@example.com"})
		h.impAuditFlags(evImpersonationStarted, map[string]bool{"impersonator_email_verified": false})
		// The next request is the session's, not the callback's: the same, whatever the
		// request itself claims.
		e, _ = h.browse("/later", "X-Forwarded-Impersonator-Email", "spoofed@example.com",
			"X-Forwarded-Impersonator-Email-Unverified", "spoofed@example.com").echo()
		impWantHeaders(t, e, map[string]string{"X-Forwarded-Impersonator-Email": "",
			"X-Forwarded-Impersonator-Email-Unverified": "admin@example.com"})
		// A session that is not impersonated forwards neither, whatever the request claims.
		bob := h.impOtherBrowser()
		bob.login("bob")
		e, _ = bob.browse("/", "X-Forwarded-Impersonator-Email-Unverified", "spoofed@example.com").echo()
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|bob",
			"X-Forwarded-Impersonator-Email": "", "X-Forwarded-Impersonator-Email-Unverified": ""})
	})

	t.Run("with trust_impersonator_email a listed email is matched and forwarded as verified", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), TrustImpersonatorEmail: true,
			Impersonators: []string{"Admin@Example.com"}}), nil)
		e := h.impSignedIn(h.impLink("alice", "admin", impParams{}))
		impWantHeaders(t, e, map[string]string{
			"X-Forwarded-Impersonator":                  "auth0|admin",
			"X-Forwarded-Impersonator-Email":            "admin@example.com",
			"X-Forwarded-Impersonator-Email-Unverified": "",
		})
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		h.impAuditFlags(evImpersonationStarted, map[string]bool{"impersonator_email_verified": true})

		other := h.impOtherBrowser()
		other.impRefused(h.impLink("alice", "mallory", impParams{}), map[string]string{
			"reason": "impersonator not allowed", "impersonator": "auth0|mallory"})
	})
}

// A provider administrator whose verified email is a Unicode lookalike of the listed one:
// "admİn" (U+0130), which strings.ToLower makes "admin".
var lookalikeAdmin = devidp.User{Key: "lookalike", ID: "auth0|lookalike", Email: "adm\u0130n@example.com",
	EmailVerified: true, Admin: true}

func TestImpersonationEmailsFoldOnlyASCII(t *testing.T) {
	t.Run("a Unicode lookalike of a listed impersonator email is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), TrustImpersonatorEmail: true,
			Impersonators: []string{"admin@example.com"}}), withUsers(lookalikeAdmin))
		h.impRefused(h.impLink("alice", "lookalike", impParams{}), map[string]string{
			"reason": "impersonator not allowed", "impersonator": "auth0|lookalike"})
		// The address it imitates is admitted.
		impWantHeaders(t, h.impSignedIn(h.impLink("alice", "admin", impParams{})), map[string]string{
			"X-Forwarded-Impersonator-Email": "admin@example.com"})
	})

	t.Run("a Unicode lookalike of an allowed email does not sign in", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Emails: []string{"admin@example.com"}} },
			withUsers(lookalikeAdmin))
		h.idp.SetAutoLogin("lookalike", "")
		if res := h.browse("/"); res.status != http.StatusForbidden {
			t.Fatalf("the lookalike signed in: %d %.200s", res.status, res.body)
		}
		h.impAudit(evLoginFailed, map[string]string{"subject": "auth0|lookalike", "reason": "email not allowed"})
		h.impNoSession()
		impWantHeaders(t, h.login("admin"), map[string]string{"X-Forwarded-User": "auth0|admin"})
	})

	for _, c := range []struct {
		option string
		set    func(*Handler)
	}{
		{"impersonators", func(c *Handler) {
			c.Impersonation = &ImpersonationConfig{Impersonators: []string{"adm\u0130n@example.com"}}
		}},
		{"protect", func(c *Handler) { c.Impersonation = &ImpersonationConfig{Protect: []string{"ceo@ex\u00e4mple.com"}} }},
		{"emails", func(c *Handler) { c.Allow = &AllowConfig{Emails: []string{"\u00e4dmin@example.com"}} }},
		{"domains", func(c *Handler) { c.Allow = &AllowConfig{Domains: []string{"ex\u00e4mple.com"}} }},
	} {
		t.Run("a non-ASCII email or domain listed in "+c.option+" fails to load, naming the option", func(t *testing.T) {
			h := newHarness(t, nil, nil)
			err := h.loadError(c.set)
			if err == nil || !strings.Contains(err.Error(), c.option) || !strings.Contains(err.Error(), "ASCII") {
				t.Fatalf("loading a non-ASCII %s entry: %v", c.option, err)
			}
			// The running configuration goes on.
			impWantHeaders(t, h.login("alice"), map[string]string{"X-Forwarded-User": "auth0|alice"})
		})
	}
}

// loadError asks Caddy to load the harness's site with the handler configured by cfg, and
// returns Caddy's answer; on failure the running configuration stays.
func (h *harness) loadError(cfg func(*Handler)) error {
	h.t.Helper()
	hc := Handler{Issuer: h.idpURL, ClientID: testClientID, ClientSecret: testClientSecret,
		SessionSecrets: []string{testSecret}, Cookie: &CookieConfig{Insecure: true}}
	cfg(&hc)
	app := caddyhttp.App{Servers: map[string]*caddyhttp.Server{"site": {
		Listen:    []string{strings.TrimPrefix(h.siteURL, "http://")},
		AutoHTTPS: &caddyhttp.AutoHTTPSConfig{Disabled: true},
		Routes:    caddyhttp.RouteList{{HandlersRaw: []json.RawMessage{handlerJSON(h.t, "oidc_auth", &hc)}}},
	}}}
	raw, err := json.Marshal(caddy.Config{Admin: &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{"http": caddyconfig.JSON(app, nil)}})
	if err != nil {
		h.t.Fatal(err)
	}
	return caddy.Load(raw, true)
}

func TestImpersonationExactSubjectsDomainsAndSignals(t *testing.T) {
	t.Run("an impersonator ID differing only in case from a listed one is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Impersonators: []string{"auth0|admin"}}),
			withUsers(devidp.User{Key: "ADMIN", ID: "auth0|ADMIN", Email: "other-admin@example.org", EmailVerified: true, Admin: true}))
		h.impRefused(h.impLink("alice", "ADMIN", impParams{}), map[string]string{
			"reason": "impersonator not allowed", "impersonator": "auth0|ADMIN"})
		impWantHeaders(t, h.impSignedIn(h.impLink("alice", "admin", impParams{})), aliceAsAdmin)
	})

	subCEO := devidp.User{Key: "subceo", ID: "auth0|subceo", Email: "ceo@sub.example.com", EmailVerified: true}
	t.Run("protect example.com does not cover a subdomain's user", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Protect: []string{"example.com"}}), withUsers(subCEO))
		impConfirmToken(t, h.browse(h.impLink("subceo", "admin", impParams{Scope: "openid email"})))
		h.impOtherBrowser().impRefused(h.impLink("alice", "admin", impParams{Scope: "openid email"}),
			map[string]string{"reason": "target is protected", "subject": "auth0|alice"})
	})
	t.Run("protect .example.com covers every subdomain's user, not example.com's", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Protect: []string{".Example.com"}}), withUsers(subCEO))
		h.impRefused(h.impLink("subceo", "admin", impParams{Scope: "openid email"}),
			map[string]string{"reason": "target is protected", "subject": "auth0|subceo"})
		impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{Scope: "openid email"})))
	})

	t.Run("an impersonation shown in a way the claims mode does not read is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Claims: "auth0"}),
			func(c *devidp.Config) { c.Mode = devidp.ModeAct })
		h.idp.SetAutoLogin("alice", "admin")
		res := h.browse("/")
		if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
			t.Fatalf("an act-style impersonation under claims auth0: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "does not read", "subject": "auth0|alice"})
		h.impNoEvent(evLogin)
		h.impNoSession()
		if h.upstream.count() != 0 {
			t.Error("the upstream was reached")
		}
		// The same user, not impersonated, signs in.
		impWantHeaders(t, h.login("alice"), map[string]string{"X-Forwarded-User": "auth0|alice",
			"X-Forwarded-Impersonated": "false"})
	})
}

func TestImpersonationConfirmationShowsOnlyVouchedForIdentities(t *testing.T) {
	unverified := devidp.User{Key: "unv", ID: "auth0|unv", Email: "unv@example.com", Nickname: "unv-nickname"}
	cases := []struct {
		name        string
		imp         ImpersonationConfig
		user        string
		want, never []string
	}{
		{name: "a verified target email is shown, the impersonator's is marked not verified", user: "alice",
			want: []string{`<strong id="target">alice@example.com</strong>`,
				`<strong id="impersonator">auth0|admin</strong> <span id="impersonator-unverified">(email admin@example.com, not verified)</span>`}},
		{name: "an unverified target email is not shown: the subject is", user: "unv",
			want:  []string{`<strong id="target">auth0|unv</strong>`},
			never: []string{"unv@example.com", "unv-nickname"}},
		{name: "a trusted impersonator email names the impersonator", user: "alice",
			imp:   ImpersonationConfig{TrustImpersonatorEmail: true},
			want:  []string{`<strong id="impersonator">admin@example.com</strong>?`},
			never: []string{"not verified", "impersonator-unverified"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, withImpersonation(&c.imp), withUsers(unverified))
			page := h.browse(h.impLink(c.user, "admin", impParams{Scope: "openid profile email"}))
			impConfirmToken(t, page)
			for _, w := range c.want {
				if !strings.Contains(page.body, w) {
					t.Errorf("the page lacks %s:\n%s", w, page.body)
				}
			}
			for _, n := range c.never {
				if strings.Contains(page.body, n) {
					t.Errorf("the page shows %q:\n%s", n, page.body)
				}
			}
		})
	}
}
