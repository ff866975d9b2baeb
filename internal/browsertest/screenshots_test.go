package browsertest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// screenshotsDir is docs/screenshots at the repository root, from this package's directory.
const screenshotsDir = "../../docs/screenshots"

// TestDemoScreenshots walks through the demo and, with UPDATE_SCREENSHOTS=1, saves the
// README's screenshots at a fixed 1100x800 viewport.
func TestDemoScreenshots(t *testing.T) {
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		t.Skip("set UPDATE_SCREENSHOTS=1 to write docs/screenshots")
	}
	dir, err := filepath.Abs(screenshotsDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The demo's site port, as `go run ./examples/demo` shows it, when it is free.
	o := options{sitePort: 8080}
	if l, err := net.Listen("tcp", "127.0.0.1:8080"); err != nil {
		t.Logf("port 8080 is busy (%v): the screenshots show another port", err)
		o.sitePort = 0
	} else {
		l.Close()
	}
	e := newEnv(t, o)
	e.do("fixing the viewport", chromedp.EmulateViewport(1100, 800))
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(e.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	e.navigate(e.site+"/", onLoginPage("admin"))
	shoot("provider-login.png")

	e.click("#login-admin", isApp)
	if v := e.app(); v.User != "admin@example.com" {
		t.Fatalf("signed in as the administrator, the app shows %q", v.User)
	}
	shoot("app-signed-in.png")

	e.openAdminPage()
	shoot("provider-admin.png")

	e.impersonate(impersonation{"alice", "code", "get"})
	e.do("waiting for Continue to come alive", chromedp.WaitEnabled(chromedp.CSS("#continue")))
	shoot("confirm-impersonation.png")

	e.click("#continue", onSitePage)
	if v := e.app(); v.User != "alice@example.com" || !v.Banner {
		t.Fatalf("after Continue the app shows %q (banner %v)", v.User, v.Banner)
	}
	shoot("app-impersonating.png")
}
