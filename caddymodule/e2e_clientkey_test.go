package caddymodule

import (
	"crypto"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/jwk"
)

// private_key_jwt through real Caddy: the provider's client has public keys and no secret, so
// a login or a refresh works only if every token endpoint call carries a client assertion
// signed with the matching key.

// keyOnlyClient registers pub as the test client's only credential at the provider.
func keyOnlyClient(pub crypto.PublicKey) func(*devidp.Config) {
	return func(c *devidp.Config) {
		c.Clients[0].Secret = ""
		c.Clients[0].PublicKeys = []crypto.PublicKey{pub}
		c.AccessTokenTTL = 10 * time.Minute
	}
}

// withClientKey configures the handler with the key file and no client secret.
func withClientKey(path string, more func(*Handler)) func(*Handler) {
	return func(c *Handler) {
		c.ClientSecret = ""
		c.ClientKeyFile = path
		if more != nil {
			more(c)
		}
	}
}

// checkAssertions checks that each token request carried a client assertion signed with pub for
// the provider's token endpoint, and no client secret; it returns the requests' grant types.
func (h *harness) checkAssertions(pub crypto.PublicKey) []string {
	h.t.Helper()
	var grants []string
	jtis := map[any]bool{}
	kid, _ := jwk.Thumbprint(pub)
	for _, r := range h.tokenRequests.all() {
		grants = append(grants, r.form.Get("grant_type"))
		if r.basic || r.form.Has("client_secret") || r.form.Get("client_id") != testClientID ||
			r.form.Get("client_assertion_type") != assertionType {
			h.t.Errorf("%s token request: basic %v, form %v", r.form.Get("grant_type"), r.basic, r.form)
			continue
		}
		header, claims := decodeAssertion(h.t, r.form.Get("client_assertion"), pub)
		if header["kid"] != kid || claims["aud"] != h.idpURL+"oauth/token" || claims["iss"] != testClientID ||
			claims["sub"] != testClientID || claims["exp"].(float64)-claims["iat"].(float64) != 60 {
			h.t.Errorf("assertion header %v, claims %v", header, claims)
		}
		if jtis[claims["jti"]] {
			h.t.Errorf("jti %v used twice", claims["jti"])
		}
		jtis[claims["jti"]] = true
	}
	return grants
}

func TestPrivateKeyJWTLoginAndRefresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		pem  func(t *testing.T) []byte
		pub  crypto.PublicKey
	}{
		{"with a PKCS#1 RSA key", func(*testing.T) []byte {
			return pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSAKey()))
		}, testRSAKey().Public()},
		{"with a SEC 1 P-256 key", func(t *testing.T) []byte { return sec1(t, testECKey()) }, testECKey().Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withClientKey(writeKeyFile(t, tc.pem(t)), func(c *Handler) {
				c.Refresh = true
				c.Scopes = []string{"openid", "profile", "email", "offline_access"}
				c.Audience = "https://api.example.com"
				c.Headers = &HeadersConfig{AccessToken: "Authorization"}
			}), keyOnlyClient(tc.pub))
			before := h.login("alice").Headers.Get("Authorization")
			if before == "" {
				t.Fatal("no access token forwarded after the login")
			}
			h.clock.Advance(9*time.Minute + 30*time.Second) // due for renewal
			e, ok := h.browse("/").echo()
			if !ok || e.Headers.Get("Authorization") == "" || e.Headers.Get("Authorization") == before {
				t.Fatalf("the tokens were not renewed: %v", e.Headers)
			}
			if n := h.refreshGrants.Load(); n != 1 {
				t.Errorf("%d refresh grants, want 1", n)
			}
			if got := strings.Join(h.checkAssertions(tc.pub), " "); got != "authorization_code refresh_token" {
				t.Errorf("token requests %q, want the code exchange then the refresh", got)
			}
		})
	}
}

func TestPrivateKeyJWTWithAKeyTheProviderDoesNotKnow(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8(t, testRSAKey()))
	h := newHarness(t, withClientKey(keyFile, nil), keyOnlyClient(testECKey().Public()))
	res := h.browse("/")
	if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Sign-in was refused") {
		t.Fatalf("status %d, body %.300s", res.status, res.body)
	}
	if h.upstream.count() != 0 {
		t.Error("the application was reached")
	}
	h.impAudit(evLoginFailed, map[string]string{"reason": "code exchange refused: invalid_client: Client authentication failed: the assertion's signature does not verify with the client's keys."})
	for _, r := range h.tokenRequests.all() {
		if a := r.form.Get("client_assertion"); a == "" || strings.Contains(res.body, a) {
			t.Errorf("no assertion sent, or the page shows it")
		}
	}
}

func TestPrivateKeyJWTInUnsolicitedImpersonation(t *testing.T) {
	keyFile := writeKeyFile(t, sec1(t, testECKey()))
	h := newHarness(t, withClientKey(keyFile, withImpersonation(&ImpersonationConfig{})), keyOnlyClient(testECKey().Public()))
	page := h.browse(h.impLink("alice", "admin", impParams{ResponseType: "code", State: "from-the-admin-tool"}))
	impWantHeaders(t, h.impConfirm(page), aliceAsAdmin)
	if got := strings.Join(h.checkAssertions(testECKey().Public()), " "); got != "authorization_code" {
		t.Errorf("token requests %q, want one code exchange", got)
	}
}

func TestPrivateKeyJWTInAGlobalProvider(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8(t, testECKey()))
	options := `	oidc_auth {
		provider staff {
			issuer $ISSUER
			client_id $CLIENT_ID
			client_key ` + keyFile + `
			session_secret $SECRET
			cookie {
				insecure
			}
		}
	}`
	site := `
	oidc_auth {
		provider staff
	}
	reverse_proxy $UPSTREAM`
	h := newCaddyfileHarnessWithOptions(t, options, site, keyOnlyClient(testECKey().Public()))
	if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatalf("upstream saw %v", e.Headers)
	}
	if got := strings.Join(h.checkAssertions(testECKey().Public()), " "); got != "authorization_code" {
		t.Errorf("token requests %q, want one code exchange", got)
	}
}
