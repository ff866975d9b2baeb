package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// A config reload (`caddy reload`, or the admin API's POST /load) provisions new handlers
// while browsers hold cookies the old ones wrote and the replay memory holds what they saw.
// Sessions must survive it exactly as far as the session secrets allow, and the replay
// memory must survive it whole.

// rotatedSecret is the secret a rotation puts first.
const rotatedSecret = "fedcba9876543210fedcba9876543210-rotated"

// loadSite runs the harness's site again on its port, in front of the same upstream and
// provider, with the handler configured by cfg on top of the harness's defaults (nil: the
// defaults alone). While Caddy runs this is what `caddy reload` does; after caddy.Stop it is
// a start. The handlers of the new configuration take the test's clock and a fresh audit log.
func (h *harness) loadSite(cfg func(*Handler)) {
	h.t.Helper()
	hc := h.handlerConfig(cfg)
	site, err := url.Parse(h.siteURL)
	if err != nil {
		h.t.Fatal(err)
	}
	h.load(site.Port(), handlerJSON(h.t, "oidc_auth", &hc))
}

// reload is loadSite while Caddy runs, checked to have provisioned a new handler.
func (h *harness) reload(cfg func(*Handler)) {
	h.t.Helper()
	before := h.handler
	h.loadSite(cfg)
	if h.handler == before {
		h.t.Fatal("the reload kept the old handler")
	}
}

// withSecrets configures the session secrets, first sealing, every one opening.
func withSecrets(secrets ...string) func(*Handler) {
	return func(c *Handler) { c.SessionSecrets = secrets }
}

// sessionCookie is the browser's sealed session cookie value, its chunks joined.
func (h *harness) sessionCookie() string {
	h.t.Helper()
	site, _ := url.Parse(h.siteURL)
	req := httptest.NewRequest(http.MethodGet, h.siteURL+"/", nil)
	for _, c := range h.client.Jar.Cookies(site) {
		req.AddCookie(c)
	}
	v, ok := session.ReadChunked(req, h.handler.jar.Base)
	if !ok {
		h.t.Fatalf("the browser holds no session cookie: %v", h.cookieNames())
	}
	return v
}

// sealedWith reports whether the browser's session cookie opens with secret alone.
func (h *harness) sealedWith(secret string) bool {
	h.t.Helper()
	only, err := session.NewSealer([]string{secret})
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = only.Open(session.PurposeSession, h.sessionCookie(), h.clock.Now())
	return err == nil
}

func TestReloadKeepsSessionsTheSecretsStillOpen(t *testing.T) {
	t.Run("with the same secret every session goes on as it was", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		h.login("alice")
		bob := h.impOtherBrowser()
		bob.login("bob")
		aliceID, bobID := h.sessionID(), bob.sessionID()

		h.reload(nil)
		if got := h.sessionID(); got != aliceID {
			t.Errorf("alice's session after the reload is %q, was %q", got, aliceID)
		}
		if got := bob.sessionID(); got != bobID {
			t.Errorf("bob's session after the reload is %q, was %q", got, bobID)
		}
		if e, ok := h.api(http.MethodGet, "/after").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Errorf("alice's request after the reload did not reach the application as alice: %v", e.Headers)
		}
		h.impNoEvent(evSessionRejected)
	})

	t.Run("with a rotated list sessions go on and new cookies are sealed with the new secret", func(t *testing.T) {
		idle := func(c *Handler) { c.SessionIdle = durationOf(time.Hour) } // so a request rewrites the cookie
		h := newHarness(t, idle, nil)
		h.login("alice")
		id := h.sessionID()
		if !h.sealedWith(testSecret) {
			t.Fatal("the first cookie is not sealed with the configured secret")
		}

		h.reload(func(c *Handler) { idle(c); withSecrets(rotatedSecret, testSecret)(c) })
		if got := h.sessionID(); got != id {
			t.Fatalf("the session after the rotation is %q, was %q", got, id)
		}
		h.impNoEvent(evSessionRejected)

		h.clock.Advance(10 * time.Minute) // past a eighth of the idle timeout: the next answer rewrites the cookie
		if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK || len(res.header.Values("Set-Cookie")) == 0 {
			t.Fatalf("the idle clock's renewal: %d, cookies %q", res.status, res.header.Values("Set-Cookie"))
		}
		if !h.sealedWith(rotatedSecret) || h.sealedWith(testSecret) {
			t.Errorf("the rewritten cookie is not sealed with the new secret alone")
		}
		if got := h.sessionID(); got != id {
			t.Errorf("the rewritten session is %q, was %q", got, id)
		}

		carol := h.impOtherBrowser()
		carol.login("carol")
		if !carol.sealedWith(rotatedSecret) || carol.sealedWith(testSecret) {
			t.Errorf("a login after the rotation is not sealed with the new secret alone")
		}

		// Once the old secret is dropped, the rewritten cookie still opens.
		h.reload(func(c *Handler) { idle(c); withSecrets(rotatedSecret)(c) })
		if got := h.sessionID(); got != id {
			t.Errorf("after the old secret was dropped the rewritten session is %q, was %q", got, id)
		}
	})

	t.Run("with the old secret removed old sessions end, audited", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		h.login("alice")
		bob := h.impOtherBrowser()
		bob.login("bob")
		upstreamHits := h.upstream.count()

		h.reload(withSecrets(rotatedSecret))
		if res := h.api(http.MethodGet, "/api"); res.status != http.StatusUnauthorized {
			t.Fatalf("an API request with a cookie of the removed secret: %d %.200s", res.status, res.body)
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": "does not open"})
		for _, name := range h.cookieNames() {
			if name == h.handler.jar.Base {
				t.Errorf("the unopenable session cookie was not cleared")
			}
		}

		res := bob.impNavigate(h.siteURL + "/page")
		if res.status != http.StatusFound || !strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Fatalf("a navigation with a cookie of the removed secret: %d to %q", res.status, res.header.Get("Location"))
		}
		if n := h.audit.FilterMessage(evSessionRejected).Len(); n != 2 {
			t.Errorf("%d session_rejected events, want one per browser", n)
		}
		if h.upstream.count() != upstreamHits {
			t.Errorf("the application was reached with a session of the removed secret")
		}
		if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" || !h.sealedWith(rotatedSecret) {
			t.Errorf("a new login after the secret was removed: %v", e.Headers)
		}
	})
}

func TestReloadKeepsTheReplayMemory(t *testing.T) {
	imp := withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)})

	t.Run("a code used before the reload is refused after it, and still remembered", func(t *testing.T) {
		h := newHarness(t, imp, nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
		if _, ok := h.browse(loc.String()).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		h.reload(imp)
		other := h.impOtherBrowser()
		if res := other.browse(loc.String()); res.status != http.StatusForbidden {
			t.Fatalf("the code replayed after the reload: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "replayed"})
		other.impNoSession()
		// The provider refuses a code redeemed twice before the module's memory is consulted
		// (a code is claimed only once it passed everything), so the memory is looked at
		// directly: the new configuration's store knows the code.
		fresh, err := h.handler.store.Claim(context.Background(), keyCode+tokenHash(loc.Query().Get("code")), h.clock.Now().Add(time.Hour))
		if err != nil || fresh {
			t.Errorf("the store after the reload does not remember the code: Claim = (%v, %v)", fresh, err)
		}
	})

	t.Run("an ID token used before the reload is refused after it", func(t *testing.T) {
		h := newHarness(t, imp, nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))
		if _, ok := h.impRelayFragment(loc).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		h.reload(imp)
		other := h.impOtherBrowser()
		if res := other.impRelayFragment(loc); res.status != http.StatusForbidden {
			t.Fatalf("the tokens replayed after the reload: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "ID token replayed"})
		other.impNoSession()
	})

	t.Run("a login attempt used before the reload is refused after it", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		state, authorize := h.startAttempt()
		site, _ := url.Parse(h.siteURL)
		attemptCookies := h.client.Jar.Cookies(site)
		if e, ok := h.browse(authorize).echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("the first login: %v", e.Headers)
		}
		h.reload(nil)
		h.client.Jar.SetCookies(site, attemptCookies)
		res := h.browse("/oauth2/callback?code=another-code&state=" + url.QueryEscape(state))
		if res.status != http.StatusBadRequest {
			t.Fatalf("the attempt replayed after the reload: %d %.300s", res.status, res.body)
		}
		h.impAudit(evLoginFailed, map[string]string{"reason": "login attempt already used"})
	})
}
