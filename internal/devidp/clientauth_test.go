// Tests of private_key_jwt client authentication (RFC 7523).

package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// signAssertion makes a JWT of claims signed with key (RS256 for RSA, ES256 for P-256).
func signAssertion(t *testing.T, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, _ = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + b64.EncodeToString(sig)
}

func TestPrivateKeyJWT(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey := sharedKey2(t)
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "machine", PublicKeys: []crypto.PublicKey{&rsaKey.PublicKey, &ecKey.PublicKey}})
	})
	now := e.clock.Now()
	tokenURL := e.srv.URL + "/oauth/token"
	claims := func(change func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "machine", "sub": "machine", "aud": tokenURL, "jti": newID(),
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	request := func(t *testing.T, assertion string, extra url.Values) (int, map[string]any) {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "audience": {"https://api.example.com"},
			"client_assertion_type": {assertionType}, "client_assertion": {assertion}}
		for k, v := range extra {
			form[k] = v
		}
		resp, body := e.post(t, e.url("oauth/token"), form)
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		return resp.StatusCode, m
	}
	accepted := func(t *testing.T, status int, m map[string]any) {
		t.Helper()
		if status != 200 {
			t.Fatalf("refused: %d %v", status, m)
		}
		if c := e.verifyJWT(t, m["access_token"].(string)); c["sub"] != "machine@clients" {
			t.Errorf("claims %v", c)
		}
	}
	refused := func(t *testing.T, status int, m map[string]any, why string) {
		t.Helper()
		if desc, _ := m["error_description"].(string); status != 401 || m["error"] != "invalid_client" || !strings.Contains(desc, why) {
			t.Errorf("got %d %v, want invalid_client about %q", status, m, why)
		}
	}
	t.Run("an RS256 assertion for the token endpoint is accepted", func(t *testing.T) {
		status, m := request(t, signAssertion(t, rsaKey, claims(nil)), nil)
		accepted(t, status, m)
	})
	t.Run("an ES256 assertion for the issuer, aud as an array, with client_id, is accepted", func(t *testing.T) {
		status, m := request(t, signAssertion(t, ecKey, claims(func(c map[string]any) { c["aud"] = []string{e.srv.URL + "/"} })),
			url.Values{"client_id": {"machine"}})
		accepted(t, status, m)
	})
	for _, tc := range []struct {
		name      string
		assertion func() string
		extra     url.Values
		why       string
	}{
		{"an assertion signed by another key is refused",
			func() string { return signAssertion(t, otherEC, claims(nil)) }, nil, "signature"},
		{"an expired assertion is refused",
			func() string {
				return signAssertion(t, ecKey, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }))
			}, nil, "expired"},
		{"an assertion without exp is refused",
			func() string { return signAssertion(t, ecKey, claims(func(c map[string]any) { delete(c, "exp") })) }, nil, "expired"},
		{"an assertion valid for a day is refused",
			func() string {
				return signAssertion(t, ecKey, claims(func(c map[string]any) { c["exp"] = now.Add(24 * time.Hour).Unix() }))
			}, nil, "too long"},
		{"an assertion for another audience is refused",
			func() string {
				return signAssertion(t, ecKey, claims(func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }))
			}, nil, "aud"},
		{"an assertion whose iss is not its sub is refused",
			func() string { return signAssertion(t, ecKey, claims(func(c map[string]any) { c["iss"] = "app" })) }, nil, "iss and sub"},
		{"an assertion without jti is refused",
			func() string { return signAssertion(t, ecKey, claims(func(c map[string]any) { delete(c, "jti") })) }, nil, "jti"},
		{"an assertion not yet valid is refused",
			func() string {
				return signAssertion(t, ecKey, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() }))
			}, nil, "not valid yet"},
		{"an assertion for another client_id is refused",
			func() string { return signAssertion(t, ecKey, claims(nil)) }, url.Values{"client_id": {"app"}}, "client_id"},
		{"a wrong assertion type is refused",
			func() string { return signAssertion(t, ecKey, claims(nil)) },
			url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}}, "client_assertion_type"},
		{"an unsigned assertion is refused",
			func() string {
				parts := strings.Split(signAssertion(t, ecKey, claims(nil)), ".")
				return b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
			}, nil, "signature"},
		{"an assertion for a client without keys is refused",
			func() string {
				return signAssertion(t, ecKey, claims(func(c map[string]any) { c["iss"], c["sub"] = "app", "app" }))
			}, nil, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := request(t, tc.assertion(), tc.extra)
			refused(t, status, m, tc.why)
		})
	}
	t.Run("a replayed jti is refused", func(t *testing.T) {
		a := signAssertion(t, rsaKey, claims(nil))
		status, m := request(t, a, nil)
		accepted(t, status, m)
		status, m = request(t, a, nil)
		refused(t, status, m, "already used")
	})
	t.Run("a keyed client without a secret cannot authenticate by client_id alone", func(t *testing.T) {
		status, m := e.exchange(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"machine"},
			"audience": {"https://api.example.com"}})
		if status != 401 || m["error"] != "invalid_client" {
			t.Errorf("got %d %v", status, m)
		}
	})
	t.Run("token-auth-post-only refuses private_key_jwt and discovery stops listing it", func(t *testing.T) {
		e.idp.SetMisbehaviour(TokenAuthPostOnly)
		defer e.idp.SetMisbehaviour()
		status, m := request(t, signAssertion(t, rsaKey, claims(nil)), nil)
		refused(t, status, m, "private_key_jwt")
		if d := e.discovery(t); d["token_endpoint_auth_signing_alg_values_supported"] != nil {
			t.Errorf("discovery %v", d)
		}
	})
	t.Run("New refuses a key private_key_jwt cannot use", func(t *testing.T) {
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, err := New(Config{Issuer: "http://127.0.0.1:1/", Key: sharedKey(t),
			Clients: []Client{{ID: "c", PublicKeys: []crypto.PublicKey{&p384.PublicKey}}}})
		if err == nil {
			t.Error("accepted a P-384 key")
		}
	})
}
