package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"

	"github.com/relyingparty/caddy-oidc-auth/internal/assertion"
)

// The signed identity assertion, verified as an application would: go-oidc's RemoteKeySet on
// the site's jwks.json and a verifier for the issuer and audience.

const testAudience = "billing"

func withAssertion(c AssertionConfig) func(*Handler) {
	return func(h *Handler) {
		if c.Audience == "" {
			c.Audience = testAudience
		}
		h.Assertion = &c
	}
}

// assertionClaims is what an application reads of an assertion.
type assertionClaims struct {
	Iss           string   `json:"iss"`
	Sub           string   `json:"sub"`
	Aud           string   `json:"aud"`
	Iat           int64    `json:"iat"`
	Nbf           int64    `json:"nbf"`
	Exp           int64    `json:"exp"`
	Jti           string   `json:"jti"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name"`
	Username      string   `json:"preferred_username"`
	Groups        []string `json:"groups"`
	Sid           string   `json:"sid"`
	Act           *struct {
		Sub   string  `json:"sub"`
		Email *string `json:"email"`
	} `json:"act"`
}

// verifyAssertion verifies token as an application at issuer would, with the keys published
// at jwksSite, on the test's clock; it fails the test unless the token verifies.
func (h *harness) verifyAssertion(token, issuer, jwksSite string) assertionClaims {
	h.t.Helper()
	c, err := h.tryAssertion(token, issuer, jwksSite)
	if err != nil {
		h.t.Fatalf("the assertion does not verify against %s/oauth2/jwks.json: %v", jwksSite, err)
	}
	return c
}

func (h *harness) tryAssertion(token, issuer, jwksSite string) (assertionClaims, error) {
	ctx := context.Background()
	keys := oidc.NewRemoteKeySet(ctx, jwksSite+"/oauth2/jwks.json")
	v := oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: testAudience, SupportedSigningAlgs: []string{oidc.ES256},
		Now: h.clock.Now})
	var c assertionClaims
	tok, err := v.Verify(ctx, token)
	if err == nil {
		err = tok.Claims(&c)
	}
	return c, err
}

// assertionOf is the one assertion the upstream received, failing the test unless there is
// exactly one.
func (h *harness) assertionOf(e echoed) string {
	h.t.Helper()
	vals := e.Headers.Values(defaultAssertionHeader)
	if len(vals) != 1 || vals[0] == "" {
		h.t.Fatalf("the upstream got %d assertions: %q", len(vals), vals)
	}
	return vals[0]
}

// kidOf is the key ID in a token's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	var hdr struct{ Kid string }
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		t.Fatalf("the token's header does not decode: %q", token)
	}
	return hdr.Kid
}

// publishedKids lists the kids of site's JWKS.
func (h *harness) publishedKids(site string) []string {
	h.t.Helper()
	res := h.api(http.MethodGet, site+"/oauth2/jwks.json")
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &doc) != nil {
		h.t.Fatalf("JWKS: %d %.200s", res.status, res.body)
	}
	var kids []string
	for _, k := range doc.Keys {
		if _, private := k["d"]; private {
			h.t.Fatal("the JWKS serves a private key")
		}
		kids = append(kids, k["kid"])
	}
	return kids
}

func TestTheAppVerifiesWhoTheUserIs(t *testing.T) {
	h := newHarness(t, withAssertion(AssertionConfig{}), nil)
	e := h.login("alice")
	token := h.assertionOf(e)
	c := h.verifyAssertion(token, h.siteURL, h.siteURL)

	t.Run("the assertion says who the user is, for the configured audience", func(t *testing.T) {
		if c.Iss != h.siteURL || c.Aud != testAudience || c.Sub != "auth0|alice" || c.Email != "alice@example.com" ||
			!c.EmailVerified || c.Name != "Alice Example" || !slices.Equal(c.Groups, []string{"staff"}) || c.Act != nil {
			t.Fatalf("claims %+v", c)
		}
		if sid := h.impSession().ID; c.Sid != sid || sid == "" {
			t.Errorf("sid %q, want the session's ID %q", c.Sid, sid)
		}
		if now := h.clock.Now().Unix(); c.Iat > now || c.Nbf != c.Iat || c.Exp != c.Iat+int64(defaultAssertionLifetime/time.Second) || c.Jti == "" {
			t.Errorf("times iat %d nbf %d exp %d (now %d), jti %q", c.Iat, c.Nbf, c.Exp, now, c.Jti)
		}
		if kid := kidOf(t, token); !slices.Contains(h.publishedKids(h.siteURL), kid) {
			t.Errorf("kid %s is not published", kid)
		}
	})
	t.Run("another audience refuses it", func(t *testing.T) {
		v := oidc.NewVerifier(h.siteURL, oidc.NewRemoteKeySet(context.Background(), h.siteURL+"/oauth2/jwks.json"),
			&oidc.Config{ClientID: "another-app", SupportedSigningAlgs: []string{oidc.ES256}, Now: h.clock.Now})
		if _, err := v.Verify(context.Background(), token); err == nil {
			t.Fatal("an assertion for billing verified for another-app")
		}
	})
	t.Run("an assertion the client sends never reaches the app, in any spelling", func(t *testing.T) {
		forged := h.browse("/page", "x-identity-assertion", "forged", "X_Identity_Assertion", "forged2",
			"X-IDENTITY.ASSERTION", "forged3")
		fe, _ := forged.echo()
		for name, vals := range fe.Headers {
			if sameHeaderName(name, defaultAssertionHeader) && (len(vals) != 1 || strings.HasPrefix(vals[0], "forged")) {
				t.Fatalf("%s: %q reached the app", name, vals)
			}
		}
		h.verifyAssertion(h.assertionOf(fe), h.siteURL, h.siteURL)
		anon := h.impOtherBrowser().api(http.MethodGet, "/api", "X-Identity-Assertion", "forged")
		if anon.status != http.StatusUnauthorized {
			t.Fatalf("an unauthenticated request: %d", anon.status)
		}
	})
	t.Run("the assertion is reused until half its lifetime is gone, then signed anew", func(t *testing.T) {
		first := h.assertionOf(h.login("alice"))
		if again := h.assertionOf(h.login("alice")); again != first {
			t.Fatal("a second request within the lifetime got a new assertion")
		}
		h.clock.Advance(defaultAssertionLifetime/2 + time.Second)
		renewed := h.assertionOf(h.login("alice"))
		if renewed == first {
			t.Fatal("past half its lifetime the same assertion was sent")
		}
		if c := h.verifyAssertion(renewed, h.siteURL, h.siteURL); c.Iat != h.clock.Now().Unix() {
			t.Errorf("the renewed assertion was issued at %d, want now %d", c.Iat, h.clock.Now().Unix())
		}
	})
	t.Run("the JWKS endpoint answers GET and HEAD, briefly cacheable, and 405 otherwise", func(t *testing.T) {
		res := h.api(http.MethodGet, "/oauth2/jwks.json")
		if res.header.Get("Content-Type") != "application/json" || !strings.Contains(res.header.Get("Cache-Control"), "max-age=30") {
			t.Errorf("headers %v", res.header)
		}
		if res := h.api(http.MethodHead, "/oauth2/jwks.json"); res.status != http.StatusOK || res.body != "" {
			t.Errorf("HEAD: %d %q", res.status, res.body)
		}
		if res := h.api(http.MethodPost, "/oauth2/jwks.json"); res.status != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d", res.status)
		}
	})
}

func TestAnImpersonatedSessionsAssertionNamesTheActor(t *testing.T) {
	for _, trust := range []bool{true, false} {
		name := "act.email is the impersonator's when vouched for"
		if !trust {
			name = "act carries no email nothing vouches for"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(c *Handler) {
				withAssertion(AssertionConfig{})(c)
				c.Impersonation = &ImpersonationConfig{Confirm: boolPtr(false), TrustImpersonatorEmail: trust}
			}, nil)
			e := h.impSignedIn(h.impLink("alice", "admin", impParams{}))
			c := h.verifyAssertion(h.assertionOf(e), h.siteURL, h.siteURL)
			if c.Sub != "auth0|alice" || c.Act == nil || c.Act.Sub != "auth0|admin" {
				t.Fatalf("claims %+v, act %+v", c, c.Act)
			}
			switch {
			case trust && (c.Act.Email == nil || *c.Act.Email != "admin@example.com"):
				t.Errorf("act.email %v, want admin@example.com", c.Act.Email)
			case !trust && c.Act.Email != nil:
				t.Errorf("act.email %q, unverified", *c.Act.Email)
			}
		})
	}
}

func TestAssertionKeysRotate(t *testing.T) {
	h := newHarness(t, withAssertion(AssertionConfig{KeyRotation: caddy.Duration(time.Hour)}), nil)
	before := h.assertionOf(h.login("alice"))
	oldKid := kidOf(t, before)

	t.Run("through the admin API: a new kid, and the old assertions still verify", func(t *testing.T) {
		status, body := adminCall(t, &AdminAPI{audit: zap.NewNop()}, http.MethodPost, "/oidc_auth/assertion/rotate")
		if status != http.StatusOK {
			t.Fatalf("rotate: %d %s", status, body)
		}
		// The new key is published at once, and signs only once every instance and cached
		// JWKS can have it.
		if kid := kidOf(t, h.assertionOf(h.login("alice"))); kid != oldKid {
			t.Fatalf("the new key signed at once (%s), before it was published for %v", kid, assertion.PublishAhead)
		}
		published := h.publishedKids(h.siteURL)
		// Key times are whole seconds, and the first key was made on the real clock before the
		// test's took over: a second or two of margin.
		h.clock.Advance(assertion.PublishAhead + 2*time.Second)
		after := h.assertionOf(h.login("alice"))
		newKid := kidOf(t, after)
		if newKid == oldKid || !strings.Contains(body, newKid) {
			t.Fatalf("after the rotation kid %s (before %s), admin answered %s", newKid, oldKid, body)
		}
		if !slices.Contains(published, oldKid) || !slices.Contains(published, newKid) {
			t.Fatalf("published before the switch %v, want both %s and %s", published, oldKid, newKid)
		}
		h.verifyAssertion(before, h.siteURL, h.siteURL)
		h.verifyAssertion(after, h.siteURL, h.siteURL)
		if status, _ := adminCall(t, &AdminAPI{audit: zap.NewNop()}, http.MethodGet, "/oidc_auth/assertion/rotate"); status != http.StatusMethodNotAllowed {
			t.Errorf("GET rotate: %d", status)
		}
	})
	t.Run("the retired key is gone once what it signed has expired", func(t *testing.T) {
		h.clock.Advance(assertion.Retention - time.Minute)
		if !slices.Contains(h.publishedKids(h.siteURL), oldKid) {
			t.Fatal("the retired key went before its retention")
		}
		h.clock.Advance(time.Minute)
		if slices.Contains(h.publishedKids(h.siteURL), oldKid) {
			t.Fatal("the retired key is still published after its retention")
		}
	})
}

func TestAnAssertionKeyOlderThanKeyRotationIsReplaced(t *testing.T) {
	h := newHarness(t, withAssertion(AssertionConfig{KeyRotation: caddy.Duration(time.Hour)}), nil)
	first := kidOf(t, h.assertionOf(h.login("alice")))
	h.clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Past half the assertion's lifetime, so that each request signs anew. The request
		// that finds the key due signs with it and has the rotation made in the background.
		h.clock.Advance(defaultAssertionLifetime/2 + time.Second)
		if kid := kidOf(t, h.assertionOf(h.login("alice"))); kid != first {
			if kids := h.publishedKids(h.siteURL); !slices.Contains(kids, kid) || !slices.Contains(kids, first) {
				t.Fatalf("published %v, want the new %s and the retired %s", kids, kid, first)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the key older than key_rotation still signs")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInstancesSharingStorageSignAlike(t *testing.T) {
	h := newHarness(t, withAssertion(AssertionConfig{}), nil)
	other := h.secondInstance(withAssertion(AssertionConfig{}))
	here := h.assertionOf(h.login("alice"))
	res := h.api(http.MethodGet, other+"/there")
	e, ok := res.echo()
	if !ok {
		t.Fatalf("the other instance: %d %.200s", res.status, res.body)
	}
	there := h.assertionOf(e)
	if kidOf(t, here) != kidOf(t, there) {
		t.Fatalf("the instances sign with different keys: %s and %s", kidOf(t, here), kidOf(t, there))
	}
	for _, site := range []string{h.siteURL, other} {
		if c := h.verifyAssertion(here, h.siteURL, site); c.Sub != "auth0|alice" {
			t.Errorf("this instance's assertion against %s: sub %q", site, c.Sub)
		}
		if c := h.verifyAssertion(there, h.siteURL, site); c.Sub != "auth0|alice" { // one issuer, configured
			t.Errorf("the other instance's assertion against %s: sub %q", site, c.Sub)
		}
	}

	t.Run("a rotation on one is published by the other", func(t *testing.T) {
		status, body := adminCall(t, &AdminAPI{audit: zap.NewNop()}, http.MethodPost, "/oidc_auth/assertion/rotate")
		if status != http.StatusOK {
			t.Fatalf("rotate: %d %s", status, body)
		}
		h.clock.Advance(defaultAssertionLifetime)
		rotated := h.assertionOf(h.login("alice"))
		// Published within jwksFreshness of a JWKS request, or, when that reload finds the
		// instance busy reloading already, by its own reload (every keyReloadEvery).
		deadline := time.Now().Add(keyReloadEvery + 5*time.Second)
		for {
			if _, err := h.tryAssertion(rotated, h.siteURL, other); err == nil {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("the other instance never published the new key %s: %v (it publishes %v, this one %v)",
					kidOf(t, rotated), err, h.publishedKids(other), h.publishedKids(h.siteURL))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestAStoredKeySetThatDoesNotDecodeFailsTheConfigLoad(t *testing.T) {
	h, port := startHarness(t, nil)
	path := filepath.Join(h.storageDir, filepath.FromSlash(assertionKeysPath))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"format":1,"keys":[{"kid":"x","d":"AAAA"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := h.handlerConfig(withAssertion(AssertionConfig{}))
	err := caddy.Load(h.siteConfig(port, handlerJSON(t, "oidc_auth", &hc)), true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("Caddy loaded a configuration whose signing key does not decode")
	}
	if !strings.Contains(err.Error(), "oidc_auth assertion: the signing key could not be loaded") ||
		!strings.Contains(err.Error(), "malformed") {
		t.Errorf("error %q does not say what is wrong", err)
	}
}
