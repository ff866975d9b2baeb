package browsertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/chromedp/chromedp"

	_ "github.com/relyingparty/caddy-oidc-auth/caddymodule"
	"github.com/relyingparty/caddy-oidc-auth/examples/demo/legacyapp"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

const (
	clientID      = "demo-app"
	clientSecret  = "demo-app-secret"
	sessionSecret = "browser-tests-session-secret-0123456789abcdef"

	// testTimeout bounds every browser action of one test, together.
	testTimeout = 30 * time.Second

	skipMessage = "headless Chromium not found: install Debian's chromium package (apt-get install -y chromium) or set CHROMIUM to run the browser tests"
)

// options vary the site's configuration.
type options struct {
	// secureCookies leaves out `cookie { insecure }`: the module's cookies are Secure and the
	// session cookie is __Host-oidc_auth. Chromium treats http://localhost as a secure context.
	secureCookies bool
	// sitePort is the site's port; 0 picks a free one.
	sitePort int
	// fixedState, when set, is the site's `state fixed` value for unsolicited responses.
	fixedState string
}

// env is one test's world: the provider, the protected site and a browser whose first tab
// is the env's tab. Build it with newEnv.
type env struct {
	*tab
	t          *testing.T
	site       string // http://localhost:PORT, the protected site
	idpURL     string // http://127.0.0.1:PORT/, the provider's issuer
	idp        *devidp.Server
	siteLog    *requestLog // what reached Caddy, before oidc_auth
	idpLog     *requestLog // what reached the provider
	other      string      // http://127.0.0.1:PORT, a third site that tries to frame pages
	session    string      // the module's session cookie name
	browserCtx context.Context
}

// newEnv starts the provider, the legacy app, Caddy with oidc_auth as the demo configures it,
// and a fresh Chromium. Everything stops when the test ends.
func newEnv(t *testing.T, o options) *env {
	t.Helper()
	browserCtx := startBrowser(t)

	e := &env{t: t, siteLog: new(requestLog), idpLog: new(requestLog), browserCtx: browserCtx}
	sitePort := o.sitePort
	if sitePort == 0 {
		sitePort = freePort(t)
	}
	e.site = "http://localhost:" + strconv.Itoa(sitePort)

	idpSrv := httptest.NewUnstartedServer(nil)
	e.idpURL = "http://" + idpSrv.Listener.Addr().String() + "/"
	idp, err := devidp.New(devidp.Config{
		Issuer:     e.idpURL,
		AdminToken: "browser-tests-admin-token",
		Clients: []devidp.Client{{
			ID:                     clientID,
			Secret:                 clientSecret,
			RedirectURIs:           []string{e.site + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{e.site + "/"},
		}},
	})
	if err != nil {
		t.Fatalf("starting the provider: %v", err)
	}
	e.idp = idp
	idpSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.idpLog.add(r)
		idp.ServeHTTP(w, r)
	})
	idpSrv.Start()
	t.Cleanup(idpSrv.Close)

	app := httptest.NewServer(legacyapp.Handler())
	t.Cleanup(app.Close)

	other := httptest.NewServer(framingSite())
	t.Cleanup(other.Close)
	e.other = other.URL

	e.session = "_oidc_auth"
	if o.secureCookies {
		e.session = "__Host-oidc_auth"
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	startCaddy(t, siteCaddyfile(sitePort, e.idpURL, app.Listener.Addr().String(), auditPath, o), e.siteLog)

	e.tab = &tab{t: t, e: e, root: browserCtx, name: "tab1"}
	e.tab.ctx = withTimeout(t, browserCtx)
	e.tab.keepArtifactsOnFailure()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests to the site:\n%s", e.siteLog)
			t.Logf("requests to the provider:\n%s", e.idpLog)
			if b, err := os.ReadFile(auditPath); err == nil {
				t.Logf("audit log:\n%s", b)
			}
		}
	})
	return e
}

// newTab opens another tab of the same browser (same profile, same cookies).
func (e *env) newTab(name string) *tab {
	e.t.Helper()
	ctx, cancel := chromedp.NewContext(e.browserCtx)
	e.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		e.t.Fatalf("opening a tab: %v", err)
	}
	tb := &tab{t: e.t, e: e, root: ctx, ctx: withTimeout(e.t, ctx), name: name}
	tb.keepArtifactsOnFailure()
	return tb
}

func withTimeout(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// chromiumPath is $CHROMIUM, else Debian's chromium.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// startBrowser starts a headless Chromium with a fresh profile and returns the context of its
// first tab, which has run once (so a timeout derived from it does not stop the browser).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath(chromiumPath())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CHROMIUM=%q: %v)", skipMessage, chromiumPath(), err)
		}
		t.Skip(skipMessage)
	}
	profile := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Tabs in the background keep their timers: the second-tab test waits in both.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1100, 800),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	start, cancelStart := context.WithTimeout(context.Background(), testTimeout)
	defer cancelStart()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting Chromium (%s): %v", path, err)
		}
	case <-start.Done():
		t.Fatalf("starting Chromium (%s): no answer within %s", path, testTimeout)
	}
	return ctx
}

// siteCaddyfile is the demo's Caddyfile, with a request recorder in front and the audit log
// in a file.
func siteCaddyfile(sitePort int, issuer, appAddr, auditPath string, o options) string {
	cookie := "cookie {\n\t\t\tinsecure\n\t\t}"
	if o.secureCookies {
		cookie = "# Secure cookies: http://localhost is a secure context"
	}
	state := ""
	if o.fixedState != "" {
		state = "\n\t\t\tstate fixed " + o.fixedState
	}
	return fmt.Sprintf(`{
	admin off
	auto_https off
	order browsertest_record first
	log audit {
		output file %[5]q
		format json
		include http.handlers.oidc_auth.audit
	}
	log default {
		exclude http.handlers.oidc_auth.audit
		level ERROR
	}
}

http://localhost:%[1]d {
	bind 127.0.0.1
	browsertest_record
	oidc_auth {
		issuer %[2]s
		client_id %[6]s
		client_secret %[7]s
		session_secret %[3]s
		%[8]s
		impersonation {
			impersonators auth0|admin
			protect ceo@example.com%[9]s
		}
	}
	reverse_proxy %[4]s
}
`, sitePort, issuer, sessionSecret, appAddr, auditPath, clientID, clientSecret, cookie, state)
}

// startCaddy adapts the Caddyfile and runs it in-process until the test ends.
func startCaddy(t *testing.T, caddyfile string, log *requestLog) {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("caddyfile: %s", w.Message)
	}
	siteRequests.Store(log)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading Caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
		siteRequests.Store(nil)
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	// Below the kernel's ephemeral range, and apart from the range the caddymodule tests use
	// (20000–22700): a port handed out and closed is not taken by an outgoing connection or
	// another package's test before Caddy binds it.
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(23000+rand.IntN(2000)))
		if err != nil {
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return port
	}
	t.Fatal("no free port between 23000 and 25000")
	return 0
}

// artifactsDir is where failing tests leave screenshots and HTML.
func artifactsDir() string {
	if d := os.Getenv("BROWSER_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "caddy-oidc-auth-browser")
}
