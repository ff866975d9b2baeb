package caddymodule

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/jwk"
)

// Test keys are made once: RSA key generation is slow.
var (
	testRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testECKey  = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func sec1(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

// writeKeyFile writes PEM to a file of its own and returns its path.
func writeKeyFile(t *testing.T, pemBytes []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client-key.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClientKeysLoad(t *testing.T) {
	t.Parallel()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	small := mustRSA(1024)
	ecParams := pemOf("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	legacyEncrypted := []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")
	garbageKey := pemOf("PRIVATE KEY", []byte("not DER at all, but shaped like a key"))
	for _, tc := range []struct {
		name    string
		pem     []byte
		alg     string // the accepted key's algorithm; "" when refused
		wantErr string
	}{
		{"a PKCS#8 RSA key signs RS256", pkcs8(t, testRSAKey()), "RS256", ""},
		{"a PKCS#1 RSA key signs RS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSAKey())), "RS256", ""},
		{"a PKCS#8 P-256 key signs ES256", pkcs8(t, testECKey()), "ES256", ""},
		{"a SEC 1 P-256 key signs ES256", sec1(t, testECKey()), "ES256", ""},
		{"openssl ecparam -genkey output (parameters first) is read", append(ecParams, sec1(t, testECKey())...), "ES256", ""},
		{"an RSA key under 2048 bits is refused", pkcs8(t, small), "", "an RSA key of 1024 bits; at least 2048 are required"},
		{"a P-384 key is refused", sec1(t, p384), "", "an EC key on P-384; only P-256 (ES256) is supported"},
		{"an Ed25519 key is refused", pkcs8(t, ed), "", "an unsupported key type (ed25519); want RSA (2048 bits or more) or EC P-256"},
		{"a public key is refused", pemOf("PUBLIC KEY", []byte{1, 2, 3}), "", `a PEM "PUBLIC KEY" block, not a private key`},
		{"a certificate is refused", pemOf("CERTIFICATE", []byte{1, 2, 3}), "", `a PEM "CERTIFICATE" block, not a private key`},
		{"a PKCS#8 encrypted key is refused", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "", "the key is encrypted"},
		{"a legacy encrypted PEM key is refused", legacyEncrypted, "", "the key is encrypted"},
		{"a PEM block that is not DER is refused", garbageKey, "", `the PEM "PRIVATE KEY" block does not parse`},
		{"garbage is refused", []byte("hello, I am not a key"), "", "no PEM private key found"},
		{"an empty file is refused", nil, "", "no PEM private key found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := loadClientKey(writeKeyFile(t, tc.pem))
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one starting %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "not DER at all") || strings.Contains(err.Error(), "-----") {
					t.Errorf("the error shows the file's content: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if k.alg != tc.alg {
				t.Errorf("alg %s, want %s", k.alg, tc.alg)
			}
			want, _ := jwk.Thumbprint(k.signer.Public())
			if k.kid != want || k.kid == "" {
				t.Errorf("kid %q is not the key's thumbprint %q", k.kid, want)
			}
		})
	}
	t.Run("a missing file is refused without a second copy of its path", func(t *testing.T) {
		t.Parallel()
		_, err := loadClientKey(filepath.Join(t.TempDir(), "absent.pem"))
		if err == nil || err.Error() != "cannot read it: no such file or directory" {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("a huge file is refused before it is parsed", func(t *testing.T) {
		t.Parallel()
		_, err := loadClientKey(writeKeyFile(t, bytes.Repeat([]byte("A"), maxClientKeyFile+1)))
		if err == nil || err.Error() != "too large for a PEM private key" {
			t.Fatalf("error = %v", err)
		}
	})
}

// decodeAssertion checks the JWS signature of a client assertion with pub and returns its
// header and claims.
func decodeAssertion(t *testing.T, jwt string, pub crypto.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
			t.Fatal("the RS256 signature does not verify")
		}
	case *ecdsa.PublicKey:
		if len(sig) != 64 || !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("the ES256 signature (r || s) does not verify")
		}
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := b64.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			t.Fatalf("segment %d does not decode", i)
		}
	}
	return header, claims
}

func TestClientAssertions(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"an RSA key signs RS256", testRSAKey(), "RS256"},
		{"a P-256 key signs ES256", testECKey(), "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := newClientKey(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			jwt, err := k.assertion("app", "https://idp.example.com/oauth/token", now)
			if err != nil {
				t.Fatal(err)
			}
			header, claims := decodeAssertion(t, jwt, tc.key.Public())
			kid, _ := jwk.Thumbprint(tc.key.Public())
			if header["alg"] != tc.alg || header["kid"] != kid || header["typ"] != "JWT" || len(header) != 3 {
				t.Errorf("header %v, want alg %s, kid %s, typ JWT", header, tc.alg, kid)
			}
			want := map[string]any{"iss": "app", "sub": "app", "aud": "https://idp.example.com/oauth/token",
				"iat": float64(now.Unix()), "exp": float64(now.Unix() + 60)}
			for name, w := range want {
				if claims[name] != w {
					t.Errorf("%s = %v, want %v", name, claims[name], w)
				}
			}
			if jti, _ := claims["jti"].(string); len(jti) < 16 {
				t.Errorf("jti %q is not a random value", jti)
			}
			again, _ := k.assertion("app", "https://idp.example.com/oauth/token", now)
			if _, c2 := decodeAssertion(t, again, tc.key.Public()); c2["jti"] == claims["jti"] {
				t.Error("two assertions share a jti")
			}
		})
	}
	t.Run("the audience is the token endpoint, or the tenant URL at Auth0", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ issuer, tokenURL, want string }{
			{"https://idp.example.com/realms/x", "https://idp.example.com/realms/x/protocol/openid-connect/token",
				"https://idp.example.com/realms/x/protocol/openid-connect/token"},
			{"https://tenant.eu.auth0.com/", "https://tenant.eu.auth0.com/oauth/token", "https://tenant.eu.auth0.com/"},
			{"https://auth0.com.evil.example/", "https://auth0.com.evil.example/oauth/token", "https://auth0.com.evil.example/oauth/token"},
		} {
			if got := assertionAudience(tc.issuer, tc.tokenURL); got != tc.want {
				t.Errorf("issuer %s: aud %q, want %q", tc.issuer, got, tc.want)
			}
		}
	})
}

// roundTripFunc records what a transport sends on.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTheAssertionGoesOnTokenRequestsOnly(t *testing.T) {
	t.Parallel()
	k, err := newClientKey(testECKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p := &provider{cfg: providerConfig{clientID: "app", clientKey: k, now: func() time.Time { return now }}}
	const tokenURL = "https://idp.example.com/oauth/token"
	d := &discovered{issuer: "https://idp.example.com/"}
	d.endpoint.TokenURL = tokenURL
	p.cur.Store(d)
	var sent *http.Request
	var sentBody string
	tr := &assertingTransport{p: p, next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		b, _ := io.ReadAll(r.Body)
		sentBody = string(b)
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	})}
	send := func(method, target, body string) url.Values {
		t.Helper()
		req, _ := http.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic YXBwOnNlY3JldA==")
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if req.Header.Get("Authorization") == "" {
			t.Error("the caller's request was changed")
		}
		form, _ := url.ParseQuery(sentBody)
		return form
	}

	form := send(http.MethodPost, tokenURL, "grant_type=refresh_token&refresh_token=rt&client_secret=leftover")
	if form.Get("client_assertion_type") != assertionType || form.Get("client_id") != "app" ||
		form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != "rt" || form.Has("client_secret") {
		t.Errorf("token request sent as %v", form)
	}
	if sent.Header.Get("Authorization") != "" || sent.ContentLength != int64(len(sentBody)) {
		t.Errorf("sent with Authorization %q and length %d for %d bytes", sent.Header.Get("Authorization"), sent.ContentLength, len(sentBody))
	}
	if _, claims := decodeAssertion(t, form.Get("client_assertion"), &testECKey().PublicKey); claims["aud"] != tokenURL {
		t.Errorf("aud %v, want the token endpoint", claims["aud"])
	}
	for _, tc := range []struct{ method, target string }{
		{http.MethodPost, "https://idp.example.com/oauth/revoke"},
		{http.MethodGet, tokenURL},
		{http.MethodPost, tokenURL + "?x=1"},
	} {
		if form := send(tc.method, tc.target, "a=b"); form.Has("client_assertion") || form.Get("a") != "b" {
			t.Errorf("%s %s got %v", tc.method, tc.target, form)
		}
	}
}

func TestProvisionChoosesPrivateKeyJWT(t *testing.T) {
	rsaFile := writeKeyFile(t, pkcs8(t, testRSAKey()))
	small := writeKeyFile(t, pkcs8(t, mustRSA(1024)))
	t.Setenv("UNIT_OIDC_CLIENT_KEY", rsaFile)
	base := func(extra string) string {
		return `{"issuer":"https://idp.example.com/","client_id":"app","session_secrets":["` + unitSecretNew + `"]` + extra + `}`
	}
	for _, tc := range []struct {
		name   string
		config string
		want   string // the error; "" when accepted
	}{
		{"a key and no secret mean private_key_jwt", base(`,"client_key_file":"` + rsaFile + `"`), ""},
		{"private_key_jwt named with a key is accepted", base(`,"client_auth_method":"private_key_jwt","client_key_file":"` + rsaFile + `"`), ""},
		{"the key's path may come from the environment", base(`,"client_key_file":"{env.UNIT_OIDC_CLIENT_KEY}"`), ""},
		{"private_key_jwt without a key is refused", base(`,"client_auth_method":"private_key_jwt"`),
			"oidc_auth client_auth_method private_key_jwt: client_key is required (the PEM file of the client's private key)"},
		{"private_key_jwt with a key from an unset variable is refused", base(`,"client_auth_method":"private_key_jwt","client_key_file":"{env.UNIT_OIDC_UNSET_KEY}"`),
			"oidc_auth client_auth_method private_key_jwt: client_key is required (the PEM file of the client's private key)"},
		{"private_key_jwt with a secret too is refused", base(`,"client_auth_method":"private_key_jwt","client_key_file":"` + rsaFile + `","client_secret":"` + unitClientSecret + `"`),
			"oidc_auth client_auth_method private_key_jwt: client_secret is not used with it; remove client_secret"},
		{"a key with client_secret_basic is refused", base(`,"client_auth_method":"client_secret_basic","client_key_file":"` + rsaFile + `"`),
			"oidc_auth client_key: used by private_key_jwt only, but client_auth_method is client_secret_basic; remove one of them"},
		{"a key with client_secret_post and a secret is refused", base(`,"client_auth_method":"client_secret_post","client_key_file":"` + rsaFile + `","client_secret":"` + unitClientSecret + `"`),
			"oidc_auth client_key: used by private_key_jwt only, but client_auth_method is client_secret_post; remove one of them"},
		{"a key and a secret without a method are refused", base(`,"client_key_file":"` + rsaFile + `","client_secret":"` + unitClientSecret + `"`),
			"oidc_auth: client_secret and client_key are both set; keep the one registered at the provider (client_key means private_key_jwt)"},
		{"an unknown method names private_key_jwt among the choices", base(`,"client_auth_method":"tls_client_auth"`),
			`oidc_auth client_auth_method "tls_client_auth": want client_secret_basic, client_secret_post, private_key_jwt or auto`},
		{"a key that is too small is refused at load, naming client_key", base(`,"client_key_file":"` + small + `"`),
			`oidc_auth client_key "` + small + `": an RSA key of 1024 bits; at least 2048 are required`},
		{"a missing key file is refused at load", base(`,"client_key_file":"/nonexistent/key.pem"`),
			`oidc_auth client_key "/nonexistent/key.pem": cannot read it: no such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := provisionJSON(t, tc.config)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("Provision error = %v, want %q", err, tc.want)
				}
				if strings.Contains(err.Error(), unitClientSecret) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if h.provider.cfg.clientAuth != clientAuthPrivateKeyJWT || h.provider.cfg.clientKey == nil || h.provider.cfg.clientKey.alg != "RS256" {
				t.Errorf("provider configured with method %d, key %v", h.provider.cfg.clientAuth, h.provider.cfg.clientKey != nil)
			}
			if h.ClientKeyFile != rsaFile {
				t.Errorf("client_key_file resolved to %q", h.ClientKeyFile)
			}
		})
	}
	t.Run("without a key, auto keeps the client secret", func(t *testing.T) {
		h, err := provisionJSON(t, base(`,"client_secret":"`+unitClientSecret+`"`))
		if err != nil || h.provider.cfg.clientAuth != clientAuthAuto || h.provider.cfg.clientKey != nil {
			t.Fatalf("Provision: %v; method %d", err, h.provider.cfg.clientAuth)
		}
	})
}
