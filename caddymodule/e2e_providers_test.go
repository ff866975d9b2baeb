package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The provider written once: the oidc_auth global option holds it, and each route's oidc_auth
// names it and adds its own allow rules.

const staffProvider = `	oidc_auth {
		provider staff {
			issuer $ISSUER
			client_id $CLIENT_ID
			client_secret $CLIENT_SECRET
			session_secret $SECRET
			session_claims roles
			cookie {
				insecure
			}
		}
	}`

func TestTheProviderIsWrittenOnceAndEachRouteAddsItsRules(t *testing.T) {
	site := `
	handle /admin/* {
		oidc_auth {
			provider staff
			allow {
				groups admins
			}
		}
		reverse_proxy $UPSTREAM
	}
	handle /reports/* {
		oidc_auth {
			provider staff
			allow {
				expression ` + "`" + `"executive" in claims.roles` + "`" + `
			}
			headers {
				email off
			}
		}
		reverse_proxy $UPSTREAM
	}
	handle {
		oidc_auth {
			provider staff
		}
		reverse_proxy $UPSTREAM
	}`
	for _, tc := range []struct {
		user                 string
		home, admin, reports int
	}{{"alice", 200, 403, 403}, {"carol", 200, 403, 200}, {"admin", 200, 200, 403}} {
		t.Run(tc.user, func(t *testing.T) {
			h := newCaddyfileHarnessWithOptions(t, staffProvider, site, nil)
			h.idp.SetAutoLogin(tc.user, "")
			// One login (at whichever route comes first) serves every route.
			for _, step := range []struct {
				path string
				want int
			}{{"/", tc.home}, {"/admin/x", tc.admin}, {"/reports/q", tc.reports}} {
				if got := h.statusAt(step.path); got != step.want {
					t.Errorf("%s at %s: %d, want %d", tc.user, step.path, got, step.want)
				}
			}
			if n := len(h.audit.FilterMessage(evLogin).All()); n != 1 {
				t.Errorf("%d logins, want one for the whole site", n)
			}
		})
	}
	t.Run("a route may narrow the headers", func(t *testing.T) {
		h := newCaddyfileHarnessWithOptions(t, staffProvider, site, nil)
		h.idp.SetAutoLogin("carol", "")
		e, ok := h.browse("/reports/q").echo()
		if !ok || e.Headers.Get("X-Forwarded-User") != "auth0|carol" || e.Headers.Get("X-Forwarded-Email") != "" {
			t.Fatalf("the reports route: %v", e.Headers)
		}
		if e, _ := h.browse("/").echo(); e.Headers.Get("X-Forwarded-Email") != "ceo@example.com" {
			t.Errorf("the site's route lost the email header: %v", e.Headers)
		}
	})
}

func TestAProviderReferenceIsCheckedAtLoad(t *testing.T) {
	for _, tc := range []struct{ name, options, block, want string }{
		{"an unknown provider", staffProvider, "provider partners", `provider "partners": not defined`},
		{"no global option at all", "", "provider staff", "no oidc_auth global option defines providers"},
		{"provider settings beside the name", staffProvider, "provider staff\n\t\tissuer https://other.example/", "sets everything but allow, headers and assertion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caddyMu.Lock()
			defer caddyMu.Unlock()
			text := strings.Replace(caddyfileGlobals, "\tadmin off\n", "\tadmin off\n"+strings.NewReplacer("$ISSUER", "https://idp.example/",
				"$CLIENT_ID", "app", "$CLIENT_SECRET", "s", "$SECRET", testSecret).Replace(tc.options)+"\n", 1) +
				"http://127.0.0.1:" + freePort(t) + " {\n\toidc_auth {\n\t\t" + tc.block + "\n\t}\n\trespond ok\n}\n"
			err := loadCaddyfileErr(text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loading: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestTheGlobalOptionRefusesMistakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, input, want string }{
		{"an unknown option", "oidc_auth {\n\tproviders x\n}", `unrecognized oidc_auth global option "providers"`},
		{"a provider without a name", "oidc_auth {\n\tprovider\n}", "provider takes a name"},
		{"a provider defined twice", "oidc_auth {\n\tprovider a {\n\t\tissuer https://x/\n\t}\n\tprovider a {\n\t}\n}", `provider "a" defined twice`},
		{"an unknown provider option", "oidc_auth {\n\tprovider a {\n\t\tissuerr x\n\t}\n}", `unrecognized oidc_auth option "issuerr"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseGlobalOption(caddyfile.NewTestDispenser(tc.input), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, cfg := range []*App{
		{Providers: map[string]*Handler{"a": {Allow: &AllowConfig{}}}},
		{Providers: map[string]*Handler{"a": {Providers: []string{"b"}}}},
		{Providers: map[string]*Handler{"a": nil}},
	} {
		if err := cfg.Provision(caddy.Context{}); err == nil {
			t.Errorf("provider %+v was accepted", cfg.Providers["a"])
		}
	}
}
