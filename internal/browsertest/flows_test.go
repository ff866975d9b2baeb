package browsertest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// Readiness conditions of the pages the flows go through (JavaScript expressions).
func onLoginPage(userKey string) string {
	return `!!document.getElementById(` + js("login-"+userKey) + `)`
}

const (
	onAdminPage   = `!!document.getElementById("impersonate-alice")`
	onLinkPage    = `!!document.getElementById("impersonation-link")`
	onConfirmPage = `location.pathname === "/oauth2/callback" && !!document.getElementById("continue")`
	// onSiteAnswer: the site's answer to an authorization response — the confirmation page,
	// an error page, or the app — and not the relay page on its way.
	onSiteAnswer = `location.hostname === "localhost" && !document.getElementById("relay") && (` + onSitePage + `)`
)

// signIn opens the site, signs in on the provider's login page as userKey and returns what
// the app shows.
func (tb *tab) signIn(userKey string) appView {
	tb.t.Helper()
	tb.navigate(tb.e.site+"/", onLoginPage(userKey))
	if !strings.HasPrefix(tb.location(), tb.e.idpURL+"authorize") {
		tb.t.Fatalf("the site sent the browser to %s, want the provider's login page", tb.location())
	}
	tb.click("#login-"+userKey, isApp)
	return tb.app()
}

// openAdminPage opens the provider's admin page, signing in to the provider as its
// administrator when the browser has no provider session yet.
func (tb *tab) openAdminPage() {
	tb.t.Helper()
	tb.navigate(tb.e.idpURL+"admin", onLoginPage("admin")+" || "+onAdminPage)
	if eval[bool](tb, onLoginPage("admin")) {
		tb.click("#login-admin", onAdminPage)
	}
}

// impersonationScope is the scope of impersonation links: the site's policy (protect) needs
// the target's email, which comes with the email scope.
const impersonationScope = "openid profile email"

// impersonation is how the admin page asks for an impersonation link.
type impersonation struct {
	target       string // user key
	responseType string // code or token
	responseMode string // get or post
}

// requestLink presses "Sign in as User" on the admin page and returns the one-time link.
func (tb *tab) requestLink(imp impersonation) string {
	tb.t.Helper()
	id := "impersonate-" + imp.target
	tb.do("choosing the impersonation's settings",
		chromedp.SetValue(chromedp.ID(id+"-client"), clientID),
		chromedp.SetValue(chromedp.ID(id+"-response-type"), imp.responseType),
		chromedp.SetValue(chromedp.ID(id+"-response-mode"), imp.responseMode),
		chromedp.SetValue(chromedp.ID(id+"-scope"), impersonationScope),
	)
	tb.click("#"+id+"-submit", onLinkPage)
	return eval[string](tb, `document.getElementById("impersonation-link").href`)
}

// impersonate goes from the admin page to the site's confirmation page: it requests a link
// and follows it.
func (tb *tab) impersonate(imp impersonation) {
	tb.t.Helper()
	tb.requestLink(imp)
	tb.followLink()
}

// followLink opens the one-time link of the link page and expects the site's confirmation.
func (tb *tab) followLink() {
	tb.t.Helper()
	tb.click("#impersonation-link", onSiteAnswer)
	if !eval[bool](tb, onConfirmPage) {
		tb.t.Fatalf("the link did not lead to the confirmation page: the tab is at %s, which says %q",
			tb.location(), eval[string](tb, `document.body.innerText.slice(0, 300)`))
	}
}

// confirmView is what the confirmation page asks.
type confirmView struct {
	URL          string `json:"url"`
	Hash         string `json:"hash"`
	Title        string `json:"title"`
	Target       string `json:"target"`
	Impersonator string `json:"impersonator"`
	Unverified   string `json:"unverified"` // the impersonator's email, marked as not verified
	Host         string `json:"host"`
}

func (tb *tab) confirmation() confirmView {
	tb.t.Helper()
	return eval[confirmView](tb, `(() => {
		const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent : ""; };
		return {url: location.href, hash: location.hash, title: text("#title"), target: text("#target"),
			impersonator: text("#impersonator"), unverified: text("#impersonator-unverified"), host: text("#question strong")};
	})()`)
}

// watchRelay holds the relay page's POST to the callback until it has read the address of
// the relay page — the current history entry, what the address bar shows — so the test sees
// it before the POST's answer replaces the page: the tokens must be gone from it already,
// whatever happens to the POST. (Runtime.evaluate does not answer while that navigation
// is held; the history is the browser's own.) The returned func gives that address.
func (tb *tab) watchRelay() func() string {
	tb.t.Helper()
	ctx, cancel := context.WithCancel(tb.ctx)
	tb.t.Cleanup(cancel)
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: tb.e.site + "/oauth2/callback*"}},
	})
	if err != nil {
		tb.t.Fatalf("intercepting the callback: %v", err)
	}
	address := make(chan string, 1)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			if ev.Request.Method == http.MethodPost && len(address) == 0 {
				loc := "unknown"
				if h, err := chromedp.Run(ctx, chromedp.NavigationEntries()); err != nil {
					loc += ": " + err.Error()
				} else if h.CurrentIndex >= 0 && int(h.CurrentIndex) < len(h.Entries) {
					loc = h.Entries[h.CurrentIndex].URL
				}
				address <- loc
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	return func() string {
		defer cancel()
		_, _ = chromedp.Call(tb.ctx, fetch.Disable, cdp.Empty{})
		select {
		case a := <-address:
			return a
		default:
			return "unknown: the relay page posted nothing"
		}
	}
}

// frameView is what an iframe target holds.
type frameView struct {
	URL         string `json:"url"`
	HasContinue bool   `json:"hasContinue"`
	HasFramable bool   `json:"hasFramable"`
}

// frameDocument looks inside the cross-site iframe that was navigated to src.
func (e *env) frameDocument(src string) frameView {
	e.t.Helper()
	targets, err := chromedp.Targets(e.ctx)
	if err != nil {
		e.t.Fatalf("listing targets: %v", err)
	}
	for _, ti := range targets {
		if ti.Type != "iframe" || ti.URL != src {
			continue
		}
		ctx, cancel := chromedp.NewContext(e.browserCtx, chromedp.WithTargetID(ti.TargetID), chromedp.WithDetachOnCancel())
		defer cancel()
		ctx = withTimeout(e.t, ctx)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[frameView](`({url: location.href,
			hasContinue: !!document.getElementById("continue"), hasFramable: !!document.getElementById("framable")})`))
		if err != nil {
			e.t.Fatalf("looking inside the frame of %s: %v", src, err)
		}
		return v
	}
	e.t.Fatalf("no iframe target for %s", src)
	return frameView{}
}

// followOnce requests u and returns where it redirects.
func followOnce(t *testing.T, u string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		t.Fatalf("GET %s: %d, no redirect", u, resp.StatusCode)
	}
	return loc
}

// sessionID is the module's session id, from /oauth2/userinfo fetched by the page.
func (tb *tab) sessionID() string {
	tb.t.Helper()
	r := tb.fetch("/oauth2/userinfo")
	var info struct {
		SessionID string `json:"session_id"`
	}
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &info) != nil || info.SessionID == "" {
		tb.t.Fatalf("/oauth2/userinfo: %d %s", r.Status, r.Body)
	}
	return info.SessionID
}
