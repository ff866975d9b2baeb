package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// tab is one browser tab. Every action runs under the test's deadline; a failing action
// fails the test with what it was doing and where the tab was.
type tab struct {
	t    *testing.T
	e    *env
	root context.Context // the tab's chromedp context, without a deadline
	ctx  context.Context // root with the test's deadline
	name string
}

// do runs the steps, failing the test with what if they fail.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v (tab at %s)", what, err, tb.where())
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes its value into T.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v (tab at %s)", expr, err, tb.where())
	}
	return v
}

// where is the tab's URL, for messages; it works after the test's deadline too.
func (tb *tab) where() string {
	ctx, cancel := context.WithTimeout(tb.root, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "an unknown URL"
	}
	return loc
}

// location is the tab's URL.
func (tb *tab) location() string {
	tb.t.Helper()
	return eval[string](tb, `location.href`)
}

// navigate opens url and waits for a page in which ready (a JavaScript expression) holds.
func (tb *tab) navigate(url, ready string) {
	tb.t.Helper()
	tb.navigateBy("opening "+url, chromedp.Navigate(url), ready)
}

// click clicks the element matched by the CSS selector sel, which navigates, and waits for a
// new page in which ready holds.
func (tb *tab) click(sel, ready string) {
	tb.t.Helper()
	tb.do("waiting for "+sel+" to be enabled", chromedp.WaitEnabled(chromedp.CSS(sel)))
	tb.navigateBy("clicking "+sel, chromedp.Click(chromedp.CSS(sel)), ready)
}

// navigateBy marks the current document, runs act, and waits for a new document (any number
// of redirects and self-submitting pages later) in which ready holds.
func (tb *tab) navigateBy(what string, act chromedp.Action[chromedp.Void], ready string) {
	tb.t.Helper()
	tb.do("marking the page", chromedp.Evaluate[chromedp.Void](`window.__browsertestSeen = true`))
	tb.do(what, act)
	tb.waitFor(what, ready)
}

// waitFor waits, across navigations, for a document that navigateBy has not marked, fully
// parsed, in which ready holds. The wait is a promise in the page (Runtime.evaluate, which
// the module's strict Content-Security-Policy allows, where chromedp.Poll's new Function
// is refused); it fails when its document goes away, so it starts again in the next one.
func (tb *tab) waitFor(what, ready string) {
	tb.t.Helper()
	expr := `new Promise((resolve) => {
		const check = () => {
			if (!window.__browsertestSeen && document.readyState !== "loading" && (` + ready + `)) {
				resolve(true);
				return;
			}
			setTimeout(check, 10);
		};
		check();
	})`
	var last error
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise))
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		if tb.ctx.Err() != nil {
			tb.t.Fatalf("%s: no page where %s (last error: %v); the tab is at %s", what, ready, last, tb.where())
		}
	}
}

// appView is what the legacy app's page shows.
type appView struct {
	URL          string            `json:"url"`
	Page         string            `json:"page"` // the start of another page's text
	User         string            `json:"user"`
	Impersonator string            `json:"impersonator"`
	Banner       bool              `json:"banner"`
	EndButton    bool              `json:"endButton"`
	Headers      map[string]string `json:"headers"`
}

// isApp is true on the legacy app's page.
const isApp = `document.title === "Legacy app" && !!document.getElementById("user")`

// onSitePage is true on the app's page or on one of the module's own pages (confirmation,
// errors): a wait for the app that ends early when the module answers with a page instead.
const onSitePage = isApp + ` || !!document.querySelector("main h1")`

// app reads the legacy app's page: who it says is signed in, and the headers it received.
func (tb *tab) app() appView {
	tb.t.Helper()
	v := eval[appView](tb, `(() => {
		const text = (id) => { const el = document.getElementById(id); return el ? el.textContent : ""; };
		if (document.title !== "Legacy app") return {url: location.href, page: document.body ? document.body.innerText.slice(0, 300) : ""};
		const headers = {};
		for (const td of document.querySelectorAll("td[data-header]")) headers[td.dataset.header] = td.textContent;
		return {url: location.href, user: text("user"), impersonator: text("impersonator"),
			banner: !!document.getElementById("impersonation-banner"),
			endButton: !!document.getElementById("end-impersonation"), headers};
	})()`)
	if v.Headers == nil {
		tb.t.Fatalf("expected the legacy app's page, the tab is at %s, which says: %q", v.URL, v.Page)
	}
	return v
}

// checkHeaders compares what the app received with want ("" = absent).
func (v appView) checkHeaders(t *testing.T, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := v.Headers[name]; got != w {
			t.Errorf("the app received %s = %q, want %q", name, got, w)
		}
	}
}

// fetchResult is what a fetch() from the page got.
type fetchResult struct {
	Status      int    `json:"status"`
	Redirected  bool   `json:"redirected"`
	URL         string `json:"url"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// fetch requests path from the page, as the page's own scripts would, with Accept: JSON.
func (tb *tab) fetch(path string) fetchResult {
	tb.t.Helper()
	b, err := json.Marshal(path)
	if err != nil {
		tb.t.Fatal(err)
	}
	return eval[fetchResult](tb, `fetch(`+string(b)+`, {headers: {"Accept": "application/json"}}).then(async (r) =>
		({status: r.status, redirected: r.redirected, url: r.url, contentType: r.headers.get("Content-Type") || "", body: await r.text()}))`)
}

// keepArtifactsOnFailure saves, when the test has failed, a screenshot and the HTML of the
// tab to artifactsDir and logs their paths.
func (tb *tab) keepArtifactsOnFailure() {
	t := tb.t
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir := artifactsDir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Logf("no failure artifacts: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(tb.root, 10*time.Second)
		defer cancel()
		base := filepath.Join(dir, unsafeChars.ReplaceAllString(t.Name(), "_")+"-"+tb.name)
		t.Logf("%s was at %s", tb.name, tb.where())
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
			t.Logf("no screenshot of %s: %v", tb.name, err)
		} else if err := os.WriteFile(base+".png", png, 0o644); err != nil {
			t.Logf("no screenshot of %s: %v", tb.name, err)
		} else {
			t.Logf("screenshot of %s: %s", tb.name, base+".png")
		}
		if html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html"))); err != nil {
			t.Logf("no HTML of %s: %v", tb.name, err)
		} else if err := os.WriteFile(base+".html", []byte(html), 0o644); err != nil {
			t.Logf("no HTML of %s: %v", tb.name, err)
		} else {
			t.Logf("HTML of %s: %s", tb.name, base+".html")
		}
	})
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// siteCookies returns the browser's cookies for the site.
func (tb *tab) siteCookies() []*network.Cookie {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.e.site + "/"}})
	if err != nil {
		tb.t.Fatalf("reading the site's cookies: %v", err)
	}
	return res.Cookies
}

// cookie returns the site's cookie called name, or nil.
func (tb *tab) cookie(name string) *network.Cookie {
	tb.t.Helper()
	for _, c := range tb.siteCookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// attemptCookies lists the site's per-attempt state cookies.
func (tb *tab) attemptCookies() []string {
	tb.t.Helper()
	var names []string
	for _, c := range tb.siteCookies() {
		if strings.Contains(c.Name, "_att_") {
			names = append(names, c.Name)
		}
	}
	return names
}

func cookieNames(cs []*network.Cookie) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}
