package browsertest

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The confirmation page guards its Continue against clicks meant for another window, and
// keeps the callback's address, which may carry a fixed state, out of the history.

// rearm is what the page does when it comes back (focus, or visible again): whether
// Continue was disabled at once, and after how many milliseconds it was enabled again.
type rearm struct {
	DisabledAtOnce bool    `json:"disabledAtOnce"`
	After          float64 `json:"after"`
}

// comeBack runs the script that brings the page back, then polls Continue until it is
// enabled again.
func (tb *tab) comeBack(script string) rearm {
	tb.t.Helper()
	return eval[rearm](tb, `new Promise((resolve) => {
		const b = document.getElementById("continue");
		const t0 = performance.now();
		`+script+`;
		const disabledAtOnce = b.disabled;
		const poll = () => b.disabled ? setTimeout(poll, 10) : resolve({disabledAtOnce, after: performance.now() - t0});
		poll();
	})`)
}

// The page's own delay before Continue comes alive, less the timers' slack.
const armDelayMillis = 550

func TestImpersonationContinueDisarmsWhenThePageIsLeft(t *testing.T) {
	for _, c := range []struct {
		name, leave, back string
	}{
		{"losing the focus disables Continue at once; the focus back re-enables it only after a moment",
			`window.dispatchEvent(new Event("blur"))`, `window.dispatchEvent(new Event("focus"))`},
		{"being hidden disables Continue at once; visible again re-enables it only after a moment",
			`Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
			document.dispatchEvent(new Event("visibilitychange"))`,
			`Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
			document.dispatchEvent(new Event("visibilitychange"))`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, options{})
			e.openAdminPage()
			e.impersonate(impersonation{"alice", "code", "get"})
			e.do("waiting for Continue to be enabled", chromedp.WaitEnabled(chromedp.CSS("#continue")))

			// Left for longer than the page's 600 ms, Continue stays disabled.
			left := eval[struct{ AtOnce, Later bool }](e.tab, `new Promise((resolve) => {
				const b = document.getElementById("continue");
				`+c.leave+`;
				const atOnce = b.disabled;
				setTimeout(() => resolve({AtOnce: atOnce, Later: b.disabled}), 700);
			})`)
			if !left.AtOnce {
				t.Fatal("Continue stayed enabled when the page was left")
			}
			if !left.Later {
				t.Error("Continue came back while the page was still left")
			}
			r := e.comeBack(c.back)
			if !r.DisabledAtOnce {
				t.Error("Continue was enabled at once when the page came back")
			}
			if r.After < armDelayMillis {
				t.Errorf("Continue came back %.0f ms after the page, want at least %d ms", r.After, armDelayMillis)
			}

			e.click("#continue", onSitePage)
			if v := e.app(); v.User != "alice@example.com" || !v.Banner {
				t.Errorf("after Continue the app shows %q (banner %v), want alice@example.com impersonated", v.User, v.Banner)
			}
		})
	}
}

func TestImpersonationFixedStateLeavesNoTraceInTheHistory(t *testing.T) {
	const fixed = "fixed-state-0f6b2c9d8e7a"
	e := newEnv(t, options{fixedState: fixed})
	e.openAdminPage()
	e.do("entering the state", chromedp.SetValue(chromedp.ID("impersonate-alice-state"), fixed))
	before := e.siteLog.len()
	e.impersonate(impersonation{"alice", "code", "get"})

	carried := false
	for _, r := range e.siteLog.since(before) {
		if r.Path == "/oauth2/callback" && strings.Contains(r.Query, "state="+fixed) {
			carried = true
		}
	}
	if !carried {
		t.Fatalf("the callback's address did not carry the fixed state; the site saw:\n%s", e.siteLog)
	}
	noTrace := func(when string) {
		t.Helper()
		if loc := e.location(); strings.Contains(loc, fixed) || strings.Contains(loc, "code=") {
			t.Errorf("%s the address bar shows %s", when, loc)
		}
		hist, err := chromedp.Run(e.ctx, chromedp.NavigationEntries())
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hist.Entries {
			if strings.Contains(h.URL, fixed) || strings.Contains(h.URL, "code=") {
				t.Errorf("%s the history holds %s", when, h.URL)
			}
		}
	}
	noTrace("on the confirmation page")

	e.click("#continue", onSitePage)
	if v := e.app(); v.User != "alice@example.com" {
		t.Fatalf("after Continue the app shows %q", v.User)
	}
	noTrace("after Continue")
}
