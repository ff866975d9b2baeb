package caddymodule

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// What an operator sees at start, and path-scoped setups, through real Caddy from a Caddyfile
// with its log in a file.

// startWithLog runs site (the inside of a site block; $ISSUER and the other harness names
// stand in it) with Caddy's log at INFO in a file, and returns the harness and the log so far.
func startWithLog(t *testing.T, site string, idpCfg func(*devidp.Config)) (*harness, func() string) {
	t.Helper()
	h, _ := startHarness(t, idpCfg)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	vars := strings.NewReplacer("$ISSUER", h.idpURL, "$CLIENT_ID", testClientID, "$CLIENT_SECRET", testClientSecret,
		"$SECRET", testSecret, "$UPSTREAM", h.upstream.addr)
	globals := "{\n\tadmin off\n\tauto_https off\n\tlog {\n\t\toutput file " + logFile + "\n\t\tlevel INFO\n\t\tformat json\n\t}\n}\n"
	loadCaddyfile(t, globals+h.siteURL+" {\n"+vars.Replace(site)+"\n}\n")
	h.inject()
	return h, func() string {
		b, _ := os.ReadFile(logFile)
		return string(b)
	}
}

// moduleWarnings are the module's warning lines in the log.
func moduleWarnings(log string) string {
	var out []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"logger":"http.handlers.oidc_auth"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// waitForLog waits until the log holds want (background checks log after the start).
func waitForLog(t *testing.T, log func() string, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := log()
		if strings.Contains(l, want) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", want, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTheStartSaysWhereTheEndpointsAreAndWhatDiscoveryFound(t *testing.T) {
	h, log := startWithLog(t, `
	`+oidcBlock("")+`
	reverse_proxy $UPSTREAM`, nil)
	l := waitForLog(t, log, "provider discovered")
	for _, want := range []string{`"msg":"oidc_auth ready"`, `"redirect_uri":"/oauth2/callback"`,
		`"endpoints":"/oauth2/{callback,start,logout,userinfo,...}"`, `"issuer":"` + h.idpURL + `"`,
		`"token_endpoint":"` + h.idpURL + `oauth/token"`, `"jwks_uri":"` + h.idpURL + `.well-known/jwks.json"`} {
		if !strings.Contains(l, want) {
			t.Errorf("the start log lacks %s:\n%s", want, l)
		}
	}
	if moduleWarnings(l) != "" || strings.Contains(l, testClientSecret) || strings.Contains(l, testSecret) {
		t.Errorf("a plain configuration warned, or a secret was logged:\n%s", l)
	}
}

func TestSilentMistakesWarnAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, options, warning string
	}{
		{"headers access_token without audience", "headers {\n\t\t\taccess_token X-Access-Token\n\t\t}",
			"headers access_token is set but audience is not"},
		{"a redirect_uri at the site's root", "redirect_uri /callback",
			"puts the module's endpoints at the site's root"},
		{"Secure cookies on a plain-http site that is not localhost", "redirect_uri http://app.example.com/oauth2/callback\n\t\tcookie {\n\t\t\tname s\n\t\t}",
			"redirect_uri is plain http on app.example.com and the cookies are Secure"},
		{"session_idle not shorter than session_lifetime", "session_lifetime 1h\n\t\tsession_idle 2h",
			"session_idle is not shorter than session_lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, log := startWithLog(t, `
	oidc_auth {
		issuer $ISSUER
		client_id $CLIENT_ID
		client_secret $CLIENT_SECRET
		session_secret $SECRET
		`+tc.options+`
	}
	reverse_proxy $UPSTREAM`, nil)
			l := waitForLog(t, log, "provider discovered")
			if !strings.Contains(moduleWarnings(l), tc.warning) {
				t.Errorf("no warning %q at start:\n%s", tc.warning, l)
			}
		})
	}
}

// A protected route under handle /admin/* with the default redirect_uri: the provider would
// send the browser, with its code and state, to /oauth2/callback — a route without the module,
// the application's. The start says so, and no sign-in is started: the code never exists.
func TestAPathScopedHandlerNeverSendsTheCallbackToTheApp(t *testing.T) {
	h, log := startWithLog(t, adminOnly(""), nil)
	l := waitForLog(t, log, "does not reach this oidc_auth")
	if !strings.Contains(l, `"level":"error"`) || !strings.Contains(l, "/oauth2/callback") || !strings.Contains(l, "Set redirect_uri") {
		t.Errorf("the start log does not say what to fix:\n%s", l)
	}
	r := h.browse("/admin/reports")
	if r.status != http.StatusInternalServerError || !strings.Contains(r.body, "Sign-in is misconfigured") {
		t.Fatalf("a navigation to the misrouted route: %d %.300s", r.status, r.body)
	}
	if strings.Contains(r.url.String(), "/authorize") || h.upstream.count() != 0 {
		t.Fatalf("a sign-in was started (ended at %s), or the app was reached %d times", r.url, h.upstream.count())
	}
}

// The same route with a redirect_uri it matches signs in, and the app never sees the code.
func TestAPathScopedHandlerWithItsOwnCallbackSignsIn(t *testing.T) {
	h, log := startWithLog(t, adminOnly("redirect_uri /admin/oauth2/callback"), func(c *devidp.Config) {
		c.Clients[0].RedirectURIs = append(c.Clients[0].RedirectURIs, "http://"+c.Clients[0].RedirectURIs[0][len("http://"):strings.Index(c.Clients[0].RedirectURIs[0][len("http://"):], "/")+len("http://")]+"/admin/oauth2/callback")
	})
	h.idp.SetAutoLogin("alice", "")
	r := h.browse("/admin/reports")
	e, ok := r.echo()
	if !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" || e.Path != "/admin/reports" {
		t.Fatalf("the sign-in at /admin: %d at %s %.200s", r.status, r.url, r.body)
	}
	if h.upstream.count() != 1 {
		t.Errorf("the app was reached %d times, want once (the landing page, not the callback)", h.upstream.count())
	}
	if l := waitForLog(t, log, "the callback reaches this handler"); strings.Contains(l, "does not reach this oidc_auth") {
		t.Errorf("a callback the route matches was reported misrouted:\n%s", l)
	}
}

// A provider that is down at start is reported with the cause, and Caddy starts anyway.
func TestADiscoveryFailingAtStartIsReportedWithItsCause(t *testing.T) {
	h, log := startWithLog(t, `
	oidc_auth {
		issuer http://127.0.0.1:1/
		client_id $CLIENT_ID
		client_secret $CLIENT_SECRET
		session_secret $SECRET
		cookie {
			insecure
		}
	}
	reverse_proxy $UPSTREAM`, nil)
	l := waitForLog(t, log, "the provider's discovery failed at start")
	if !strings.Contains(moduleWarnings(l), `"cause":"connection refused (127.0.0.1:1)"`) {
		t.Errorf("the warning does not say why:\n%s", moduleWarnings(l))
	}
	if r := h.browse("/"); r.status != http.StatusBadGateway {
		t.Errorf("Caddy runs and answers 502 while the provider is down: %d", r.status)
	}
}

// adminOnly is a site whose /admin/* alone is behind oidc_auth (with extra options), the rest
// open.
func adminOnly(extra string) string {
	return `
	handle /admin/* {
		` + oidcBlock(extra) + `
		reverse_proxy $UPSTREAM
	}
	handle {
		reverse_proxy $UPSTREAM
	}`
}
