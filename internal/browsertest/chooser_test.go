package browsertest

import (
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/examples/demo/legacyapp"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// TestTheChooserLetsABrowserPickItsProvider: a route accepting two providers shows a browser
// without a session a page to choose where to sign in; choosing signs in at that provider,
// with a session cookie of its own.
func TestTheChooserLetsABrowserPickItsProvider(t *testing.T) {
	browserCtx := startBrowser(t)
	e := &env{t: t, siteLog: new(requestLog), idpLog: new(requestLog), browserCtx: browserCtx}
	port := freePort(t)
	e.site = "http://localhost:" + strconv.Itoa(port)
	issuers := map[string]string{}
	for _, name := range []string{"staff", "partners"} {
		srv := httptest.NewUnstartedServer(nil)
		issuers[name] = "http://" + srv.Listener.Addr().String() + "/"
		idp, err := devidp.New(devidp.Config{Issuer: issuers[name], Clients: []devidp.Client{{
			ID: name, Secret: name + "-secret", RedirectURIs: []string{e.site + "/oauth2/" + name + "/callback"}}}})
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = idp
		srv.Start()
		t.Cleanup(srv.Close)
	}
	e.idpURL = issuers["partners"]
	app := httptest.NewServer(legacyapp.Handler())
	t.Cleanup(app.Close)
	provider := func(name string) string {
		return fmt.Sprintf(`		provider %[1]s {
			issuer %[2]s
			client_id %[1]s
			client_secret %[1]s-secret
			session_secret %[3]s
			cookie {
				insecure
			}
		}
`, name, issuers[name], sessionSecret)
	}
	startCaddy(t, `{
	admin off
	auto_https off
	order browsertest_record first
	log default {
		level ERROR
	}
	oidc_auth {
`+provider("staff")+provider("partners")+`	}
}

http://localhost:`+strconv.Itoa(port)+` {
	bind 127.0.0.1
	browsertest_record
	oidc_auth {
		provider staff partners
	}
	reverse_proxy `+app.Listener.Addr().String()+`
}
`, e.siteLog)
	e.tab = &tab{t: t, e: e, root: browserCtx, name: "tab1"}
	e.tab.ctx = withTimeout(t, browserCtx)
	e.tab.keepArtifactsOnFailure()

	e.navigate(e.site+"/projects", `!!document.getElementById("choices")`)
	e.click(`a[data-provider="partners"]`, onLoginPage("bob"))
	e.click("#login-bob", isApp)
	if v := e.app(); v.User != "bob@example.com" || v.URL != e.site+"/projects" {
		t.Errorf("after choosing partners and signing in as bob the app shows %q at %s", v.User, v.URL)
	}
	if e.cookie("_oidc_auth_partners") == nil || e.cookie("_oidc_auth_staff") != nil {
		t.Errorf("want the partners' session cookie only; the site's cookies: %v", cookieNames(e.siteCookies()))
	}
	// Another tab of the same browser is signed in already: no chooser.
	tb := e.newTab("tab2")
	tb.navigate(e.site+"/", isApp)
	if v := tb.app(); v.User != "bob@example.com" {
		t.Errorf("a second tab of the same browser: %q", v.User)
	}
}
