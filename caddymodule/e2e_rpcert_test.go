package caddymodule

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The OpenID Foundation's relying-party certification, reproduced: each module of the Basic,
// Config and refresh RP test plans (oidcc-client-test-*) is a switch of the development
// provider, and an ordinary login through real Caddy must end as the module requires. The
// provider's endpoint faults (500, HTML, truncated JSON, no answer) follow: the person gets
// the 502 page, never a 500, and nothing waits longer than the provider timeout.

// faultTimeout bounds every provider call in these tests, so "no answer" ends quickly.
const faultTimeout = 300 * time.Millisecond

// certHarness is a harness whose provider misbehaves as ms says, with a short provider timeout.
func certHarness(t *testing.T, cfg func(*Handler), ms ...devidp.Misbehaviour) *harness {
	t.Helper()
	h := newHarness(t, cfg, func(c *devidp.Config) { c.Misbehave = ms })
	for _, p := range provisionedHandlers(t) {
		p.provider.cfg.timeout = faultTimeout
		p.provider.client.Timeout = faultTimeout
	}
	// A provider that never answers holds its side of the connections: cut them before the
	// harness waits for the provider's server to close.
	t.Cleanup(h.idpSrv.CloseClientConnections)
	return h
}

func TestRelyingPartyCertificationModules(t *testing.T) {
	const ok = ""
	for _, tc := range []struct {
		module string // the certification module, or what the case checks
		ms     []devidp.Misbehaviour
		cfg    func(*Handler)
		status int
		reason string // the login_failed reason; ok: the login succeeds
	}{
		{"oidcc-client-test (a well-behaved provider)", nil, nil, http.StatusOK, ok},
		{"oidcc-client-test-idtoken-sig-rs256", nil, nil, http.StatusOK, ok},
		{"oidcc-client-test-invalid-iss", []devidp.Misbehaviour{devidp.IDTokenWrongIssuer}, nil, http.StatusBadRequest, "ID token does not verify: wrong issuer"},
		{"oidcc-client-test-missing-sub", []devidp.Misbehaviour{devidp.IDTokenWithoutSub}, nil, http.StatusBadRequest, "ID token has no subject"},
		{"oidcc-client-test-invalid-aud", []devidp.Misbehaviour{devidp.IDTokenWrongAudience}, nil, http.StatusBadRequest, "ID token does not verify: wrong audience"},
		{"oidcc-client-test-missing-iat", []devidp.Misbehaviour{devidp.IDTokenWithoutIat}, nil, http.StatusBadRequest, "ID token has no iat"},
		{"oidcc-client-test-kid-absent-single-jwks", []devidp.Misbehaviour{devidp.KidAbsentSingleJWKS}, nil, http.StatusOK, ok},
		{"oidcc-client-test-kid-absent-multiple-jwks", []devidp.Misbehaviour{devidp.KidAbsentMultipleJWKS}, nil, http.StatusOK, ok},
		{"oidcc-client-test-idtoken-sig-none", []devidp.Misbehaviour{devidp.IDTokenAlgNone}, nil, http.StatusBadRequest, "ID token does not verify: malformed"},
		{"oidcc-client-test-invalid-sig-rs256", []devidp.Misbehaviour{devidp.IDTokenBadSignature}, nil, http.StatusBadRequest, "ID token does not verify: bad signature"},
		{"oidcc-client-test-userinfo-invalid-sub", []devidp.Misbehaviour{devidp.UserinfoWrongSub}, nil, http.StatusBadRequest, "userinfo sub differs from the ID token's"},
		{"oidcc-client-test-nonce-invalid", []devidp.Misbehaviour{devidp.IDTokenWrongNonce}, nil, http.StatusBadRequest, "nonce does not match"},
		{"oidcc-client-test-client-secret-basic", []devidp.Misbehaviour{devidp.TokenAuthBasicOnly}, nil, http.StatusOK, ok},
		{"a provider taking only client_secret_post, as its discovery says", []devidp.Misbehaviour{devidp.TokenAuthPostOnly}, nil, http.StatusOK, ok},
		{"client_secret_post chosen by the operator", []devidp.Misbehaviour{devidp.TokenAuthPostOnly},
			func(c *Handler) { c.ClientAuthMethod = "client_secret_post" }, http.StatusOK, ok},
		{"client_secret_basic forced against a client_secret_post provider", []devidp.Misbehaviour{devidp.TokenAuthPostOnly},
			func(c *Handler) { c.ClientAuthMethod = "client_secret_basic" }, http.StatusBadRequest, "code exchange refused: invalid_client: Client authentication failed: client_secret_basic is not accepted."},
		{"an expired ID token", []devidp.Misbehaviour{devidp.IDTokenExpired}, nil, http.StatusBadRequest, "ID token does not verify: expired at "},
		{"an ID token issued in the future", []devidp.Misbehaviour{devidp.IDTokenIssuedInFuture}, nil, http.StatusBadRequest, "ID token issued in the future: iat 24h0m0s ahead of this server's time (check the clocks)"},
		{"an ID token not yet valid (nbf)", []devidp.Misbehaviour{devidp.IDTokenNotYetValid}, nil, http.StatusBadRequest, "ID token does not verify: not yet valid: nbf is after this server's time (check the clocks)"},
		{"oidcc-client-test-discovery-issuer-mismatch (Config RP)", []devidp.Misbehaviour{devidp.DiscoveryWrongIssuer}, nil, http.StatusBadGateway, "discovery"},
		{"the token endpoint answering 500", []devidp.Misbehaviour{devidp.TokenEndpoint500}, nil, http.StatusBadGateway, "code exchange failed"},
		{"the token endpoint answering HTML", []devidp.Misbehaviour{devidp.TokenEndpointHTML}, nil, http.StatusBadGateway, "code exchange failed"},
		{"the token endpoint answering truncated JSON", []devidp.Misbehaviour{devidp.TokenEndpointTruncated}, nil, http.StatusBadGateway, "code exchange failed"},
		{"the token endpoint not answering", []devidp.Misbehaviour{devidp.TokenEndpointSlow}, nil, http.StatusBadGateway, "code exchange failed"},
		{"userinfo answering 500", []devidp.Misbehaviour{devidp.Userinfo500}, nil, http.StatusBadGateway, "userinfo request failed"},
		{"userinfo answering HTML", []devidp.Misbehaviour{devidp.UserinfoHTML}, nil, http.StatusBadGateway, "userinfo request failed"},
		{"userinfo answering truncated JSON", []devidp.Misbehaviour{devidp.UserinfoTruncated}, nil, http.StatusBadGateway, "userinfo request failed"},
		{"userinfo not answering", []devidp.Misbehaviour{devidp.UserinfoSlow}, nil, http.StatusBadGateway, "userinfo request failed"},
		{"discovery answering 500", []devidp.Misbehaviour{devidp.Discovery500}, nil, http.StatusBadGateway, "discovery"},
		{"discovery answering HTML", []devidp.Misbehaviour{devidp.DiscoveryHTML}, nil, http.StatusBadGateway, "discovery"},
		{"discovery answering truncated JSON", []devidp.Misbehaviour{devidp.DiscoveryTruncated}, nil, http.StatusBadGateway, "discovery"},
		{"discovery not answering", []devidp.Misbehaviour{devidp.DiscoverySlow}, nil, http.StatusBadGateway, "discovery"},
		{"the key set answering 500", []devidp.Misbehaviour{devidp.JWKS500}, nil, http.StatusBadGateway, "provider keys unavailable"},
		{"the key set answering HTML", []devidp.Misbehaviour{devidp.JWKSHTML}, nil, http.StatusBadGateway, "provider keys unavailable"},
		{"the key set answering truncated JSON", []devidp.Misbehaviour{devidp.JWKSTruncated}, nil, http.StatusBadGateway, "provider keys unavailable"},
		{"the key set not answering", []devidp.Misbehaviour{devidp.JWKSSlow}, nil, http.StatusBadGateway, "provider keys unavailable"},
	} {
		t.Run(tc.module, func(t *testing.T) {
			h := certHarness(t, tc.cfg, tc.ms...)
			start := time.Now()
			res := h.browse("/")
			if took := time.Since(start); took > 5*faultTimeout+2*time.Second {
				t.Errorf("the login took %v: a provider call was not bounded", took)
			}
			if res.status != tc.status {
				t.Fatalf("status %d, want %d; body %.300s", res.status, tc.status, res.body)
			}
			if tc.reason == ok {
				if e, isEcho := res.echo(); !isEcho || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
					t.Fatalf("the login did not reach the application: %.300s", res.body)
				}
				return
			}
			if _, ok := res.echo(); ok || h.upstream.count() != 0 {
				t.Errorf("the application was reached")
			}
			if tc.reason == "discovery" {
				// Discovery fails before any login starts: the person sees the 502 page.
				if !strings.Contains(res.body, "identity provider is unreachable") {
					t.Errorf("not the unreachable page: %.300s", res.body)
				}
				return
			}
			h.impAudit(evLoginFailed, map[string]string{"reason": tc.reason})
		})
	}
}

func TestRefreshCertificationModules(t *testing.T) {
	for _, tc := range []struct {
		module string
		ms     devidp.Misbehaviour
	}{
		{"oidcc-client-test-refresh-token-invalid-issuer", devidp.RefreshWrongIssuer},
		{"oidcc-client-test-refresh-token-invalid-sub", devidp.RefreshWrongSub},
	} {
		t.Run(tc.module+": the session ends", func(t *testing.T) {
			h := newRefreshHarness(t, nil)
			h.login("alice")
			if err := h.idp.SetMisbehaviour(tc.ms); err != nil {
				t.Fatal(err)
			}
			h.clock.Advance(9*time.Minute + 30*time.Second)
			if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
				t.Fatalf("a refreshed ID token from %s was accepted: %d", tc.ms, res.status)
			}
			h.impAudit(evSessionRejected, map[string]string{"reason": "refresh refused by the provider"})
		})
	}
}

func TestSigningKeyRotation(t *testing.T) {
	t.Run("a new key verifies without a restart", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		h.login("alice")
		if _, err := h.idp.RotateKey(); err != nil {
			t.Fatal(err)
		}
		if e := h.impOtherBrowser().login("bob"); e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
			t.Fatalf("a login signed with the new key: %v", e.Headers)
		}
	})
	t.Run("a removed key no longer verifies", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		tokens := h.impFragment("alice", "admin") // signed with the first key, not yet used
		old := h.idp.Kids()[0]
		if _, err := h.idp.RotateKey(); err != nil {
			t.Fatal(err)
		}
		if err := h.idp.RemoveKey(old); err != nil {
			t.Fatal(err)
		}
		h.login("carol") // the module fetches the new key set
		res := h.impOtherBrowser().postForm("/oauth2/callback", tokens)
		if res.status != http.StatusForbidden {
			t.Fatalf("tokens signed with a removed key: %d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "ID token does not verify"})
	})
}
