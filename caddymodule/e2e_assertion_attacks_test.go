package caddymodule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/relyingparty/caddy-oidc-auth/internal/assertion"
)

// Attacks on the identity assertion, each once a hole: the test fails without its fix.

// A signed-in user must not choose the assertion's iss by sending another Host: every site
// sharing Caddy's storage signs with the same key, so iss is what tells them apart. Without an
// issuer (or an absolute redirect_uri) the configuration is refused; with one, iss is that.
func TestTheAssertionIssuerIsNeverTheHostHeader(t *testing.T) {
	h, port := startHarness(t, nil)
	hc := h.handlerConfig(nil)
	hc.Assertion = &AssertionConfig{Audience: testAudience} // no issuer, relative redirect_uri
	if err := caddy.Load(h.siteConfig(port, handlerJSON(t, "oidc_auth", &hc)), true); err == nil {
		t.Fatal("an assertion without an issuer and with a relative redirect_uri was accepted")
	}
	hc.Assertion.Issuer = h.siteURL
	if err := caddy.Load(h.siteConfig(port, handlerJSON(t, "oidc_auth", &hc)), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	h.inject()
	h.login("alice")
	for _, host := range []string{"evil.example", "app2.example:8443"} {
		req, err := http.NewRequest(http.MethodGet, h.siteURL+"/page", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for _, c := range h.client.Jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e, ok := result{status: resp.StatusCode, body: string(b)}.echo()
		if !ok {
			t.Fatalf("Host %s: the session was not accepted (%d), so the attack was not tried", host, resp.StatusCode)
		}
		if c := h.verifyAssertion(h.assertionOf(e), h.siteURL, h.siteURL); c.Iss != h.siteURL {
			t.Errorf("Host %s made iss %q", host, c.Iss)
		}
	}
}

// A new key is published by every instance before any signs with it: an application that
// meets its kid and fetches the JWKS from another instance must find it there.
func TestAKeyIsPublishedByEveryInstanceBeforeItSigns(t *testing.T) {
	t.Parallel()
	storage := newMemStorage()
	now := unitNow
	clock := func() time.Time { return now }
	a, b := startedManager(t, storage, clock), startedManager(t, storage, clock)
	if _, err := b.jwks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.refresh(context.Background(), now, true); err != nil { // A rotates
		t.Fatal(err)
	}
	// Until B rereads the storage (every keyReloadEvery, or within jwksFreshness of a JWKS
	// request), it publishes the old set; A signs with the old key meanwhile.
	body, _ := b.jwks(context.Background())
	if signing := a.current(now).ID; !slices.Contains(jwksKids(t, body), signing) {
		t.Fatalf("instance A signs with %s, instance B publishes %v", signing, jwksKids(t, body))
	}
	// By the time A's new key signs, B has reread the set (its background reload) and every
	// JWKS an application cached before (max-age 30 s) has expired.
	if assertion.PublishAhead <= keyReloadEvery+jwksFreshness+jwksMaxAge {
		t.Fatalf("PublishAhead %v does not cover the reload %v, the JWKS freshness %v and its max-age %v",
			assertion.PublishAhead, keyReloadEvery, jwksFreshness, jwksMaxAge)
	}
	now = now.Add(assertion.PublishAhead)
	b.refreshLogged()
	body, _ = b.jwks(context.Background())
	if signing := a.current(now).ID; !slices.Contains(jwksKids(t, body), signing) {
		t.Fatalf("after the switch, instance A signs with %s, instance B publishes %v", signing, jwksKids(t, body))
	}
}

// The public jwks.json must not turn every anonymous request into a storage read while the
// storage fails: at most one attempt per jwksFreshness.
func TestTheJWKSEndpointDoesNotReadAFailingStorageOnEveryRequest(t *testing.T) {
	t.Parallel()
	storage := newMemStorage()
	m := startedManager(t, storage, func() time.Time { return unitNow })
	old := m.snap.Load()
	m.snap.Store(&keySnapshot{set: old.set, loaded: time.Now().Add(-time.Hour), due: old.due}) // a stale copy
	storage.failLoads.Store(true)
	before := storage.loads.Load()
	for range 100 {
		if _, err := m.jwks(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := storage.loads.Load() - before; n > 1 {
		t.Fatalf("100 JWKS requests read the failing storage %d times", n)
	}
}

func jwksKids(t *testing.T, b []byte) []string {
	t.Helper()
	var doc struct {
		Keys []struct{ Kid string } `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}
