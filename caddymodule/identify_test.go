package caddymodule

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// identifyFixture verifies hand-signed ID tokens and serves userinfo with the given status
// and claims, so identify can be tested on exactly the claims each source carries.
type identifyFixture struct {
	key      *rsa.PrivateKey
	verifier *oidc.IDTokenVerifier
	d        *discovered
}

func newIdentifyFixture(t *testing.T, status int, userinfo map[string]any) *identifyFixture {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(userinfo)
	}))
	t.Cleanup(srv.Close)
	op := (&oidc.ProviderConfig{IssuerURL: "https://op.example/", UserInfoURL: srv.URL}).NewProvider(context.Background())
	f := &identifyFixture{key: key}
	f.verifier = oidc.NewVerifier("https://op.example/", &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}},
		&oidc.Config{ClientID: "app"})
	f.d = &discovered{p: op, userinfoURL: srv.URL}
	return f
}

func (f *identifyFixture) idToken(t *testing.T, c map[string]any) *oidc.IDToken {
	t.Helper()
	c["iss"], c["aud"] = "https://op.example/", "app"
	c["iat"], c["exp"] = time.Now().Unix(), time.Now().Add(time.Hour).Unix()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	idt, err := f.verifier.Verify(context.Background(), signing+"."+base64.RawURLEncoding.EncodeToString(sig))
	if err != nil {
		t.Fatal(err)
	}
	return idt
}

// verification is a verification against the fixture's provider, reading impersonation with m.
func (f *identifyFixture) verification(m claims.Mapping) *verification {
	return &verification{p: &provider{cfg: providerConfig{logger: zap.NewNop()}}, d: f.d, ctx: context.Background(),
		close: func() {}, mapping: m, groupsClaim: "groups"}
}

func TestIdentifyKeepsSignedClaimsAndReadsImpersonationFromEitherSource(t *testing.T) {
	t.Parallel()
	mapping := claims.Mapping{Namespace: "https://example.com/"}
	cases := []struct {
		name      string
		idToken   map[string]any
		userinfo  map[string]any
		email     string
		verified  bool
		impersona string // impersonator id; "-" = not impersonated
	}{
		{"userinfo cannot replace the ID token's email or its verification",
			map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": true},
			map[string]any{"sub": "u1", "email": "ceo@example.com", "email_verified": false},
			"a@example.com", true, "-"},
		{"userinfo adds what the ID token lacks (Auth0's impersonator)",
			map[string]any{"sub": "u1"},
			map[string]any{"sub": "u1", "email": "a@example.com", "impersonated": true, "impersonator": map[string]any{"user_id": "adm"}},
			"a@example.com", false, "adm"},
		{"userinfo cannot cancel an impersonation the ID token states",
			map[string]any{"sub": "u1", "https://example.com/impersonated": true, "https://example.com/impersonator": map[string]any{"user_id": "adm"}},
			map[string]any{"sub": "u1", "https://example.com/impersonated": false, "impersonator": nil, "act": nil},
			"", false, "adm"},
		{"an ID token saying only that it is impersonated takes the impersonator from userinfo",
			map[string]any{"sub": "u1", "https://example.com/impersonated": true},
			map[string]any{"sub": "u1", "impersonated": true, "impersonator": map[string]any{"user_id": "adm"}},
			"", false, "adm"},
		{"userinfo saying impersonated without saying who still counts (and is refused later as unknown)",
			map[string]any{"sub": "u1"},
			map[string]any{"sub": "u1", "impersonated": true},
			"", false, ""},
		{"a plain identity is not impersonated",
			map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": true},
			map[string]any{"sub": "u1", "name": "A"},
			"a@example.com", true, "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newIdentifyFixture(t, http.StatusOK, tc.userinfo)
			id, err := f.verification(mapping).identify(f.idToken(t, tc.idToken), &oauth2.Token{AccessToken: "token"})
			if err != nil {
				t.Fatalf("identify: %v", err)
			}
			if id.Email != tc.email || id.EmailVerified != tc.verified {
				t.Errorf("email %q verified %v, want %q %v", id.Email, id.EmailVerified, tc.email, tc.verified)
			}
			got := "-" // not impersonated
			if id.Imp != nil {
				got = id.Imp.ID
			}
			if got != tc.impersona {
				t.Errorf("impersonator %q, want %q", got, tc.impersona)
			}
		})
	}
}

func TestIdentifyFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		status   int
		userinfo map[string]any
		want     *pageError
	}{
		{"userinfo refusing the access token is the response's fault (400)", http.StatusUnauthorized, map[string]any{"error": "invalid_token"}, errBadCallback},
		{"userinfo failing is the provider's fault (502)", http.StatusServiceUnavailable, map[string]any{}, errProviderFailed},
		{"userinfo for another subject is refused (400)", http.StatusOK, map[string]any{"sub": "someone-else"}, errBadCallback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newIdentifyFixture(t, tc.status, tc.userinfo)
			_, err := f.verification(claims.Mapping{}).identify(f.idToken(t, map[string]any{"sub": "u1"}), &oauth2.Token{AccessToken: "token"})
			if got := pageOf(err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
