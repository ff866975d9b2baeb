// Tests of the misbehaviour switches: each one changes what goes on the wire, and only that.

package devidp

import (
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"net/url"
	"strings"
	"testing"
)

// jwtParts decodes a JWT's header and claims without verifying anything.
func jwtParts(t *testing.T, token string) (header, claims map[string]any, sig string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", token)
	}
	decodeSegment(t, parts[0], &header)
	decodeSegment(t, parts[1], &claims)
	return header, claims, parts[2]
}

// publishedKey is a JWKS entry.
type publishedKey struct {
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (e *env) jwks(t *testing.T) []publishedKey {
	t.Helper()
	_, body := e.get(t, e.url(".well-known/jwks.json"))
	var set struct{ Keys []publishedKey }
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("JWKS %q: %v", body, err)
	}
	return set.Keys
}

// verifiesWith reports whether token's RS256 signature verifies with one of keys.
func verifiesWith(token string, keys []publishedKey) bool {
	parts := strings.Split(token, ".")
	sig, _ := b64.DecodeString(parts[2])
	for _, k := range keys {
		n, _ := b64.DecodeString(k.N)
		ex, _ := b64.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(ex).Int64())}
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sha256Of(parts[0]+"."+parts[1]), sig) == nil {
			return true
		}
	}
	return false
}

// implicitTokens runs an `id_token token` flow as alice with nonce n-1 and returns the fragment.
func (e *env) implicitTokens(t *testing.T) url.Values {
	t.Helper()
	e.idp.SetAutoLogin("alice", "")
	resp, _ := e.authorize(t, map[string]string{"response_type": "id_token token", "nonce": "n-1"})
	return e.redirected(t, resp, true)
}

func TestIDTokenMisbehaviours(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now().Unix()
	num := func(v any) int64 { f, _ := v.(float64); return int64(f) }
	for _, tc := range []struct {
		m     Misbehaviour
		check func(t *testing.T, v url.Values, h, c map[string]any, sig string)
	}{
		{IDTokenWithoutIat, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if _, ok := c["iat"]; ok || c["exp"] == nil {
				t.Errorf("claims %v", c)
			}
		}},
		{IDTokenWrongIssuer, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if c["iss"] != WrongIssuer {
				t.Errorf("iss %v", c["iss"])
			}
		}},
		{IDTokenWithoutSub, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if _, ok := c["sub"]; ok || c["email"] != "alice@example.com" {
				t.Errorf("claims %v", c)
			}
		}},
		{IDTokenWrongAudience, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if c["aud"] != WrongAudience || c["azp"] != nil {
				t.Errorf("aud %v azp %v", c["aud"], c["azp"])
			}
		}},
		{IDTokenAlgNone, func(t *testing.T, _ url.Values, h, _ map[string]any, sig string) {
			if h["alg"] != "none" || h["kid"] != nil || sig != "" {
				t.Errorf("header %v, signature %q", h, sig)
			}
		}},
		{IDTokenBadSignature, func(t *testing.T, v url.Values, h, _ map[string]any, _ string) {
			if h["alg"] != "RS256" || h["kid"] == nil || verifiesWith(v.Get("id_token"), e.jwks(t)) {
				t.Errorf("header %v; the signature verifies", h)
			}
		}},
		{KidAbsentSingleJWKS, func(t *testing.T, v url.Values, h, _ map[string]any, _ string) {
			keys := e.jwks(t)
			if h["kid"] != nil || len(keys) != 1 || keys[0].Kid != "" || !verifiesWith(v.Get("id_token"), keys) {
				t.Errorf("header %v, JWKS %+v", h, keys)
			}
			resp, _ := e.authorize(t, map[string]string{"response_type": "token", "audience": "https://api.example.com"})
			if h, _, _ := jwtParts(t, e.redirected(t, resp, true).Get("access_token")); h["kid"] != nil {
				t.Errorf("the JWT access token keeps a kid: %v", h)
			}
		}},
		{KidAbsentMultipleJWKS, func(t *testing.T, v url.Values, h, _ map[string]any, _ string) {
			keys := e.jwks(t)
			if h["kid"] != nil || len(keys) < 2 || keys[0].Kid != "" || keys[1].Kid != "" || !verifiesWith(v.Get("id_token"), keys) {
				t.Errorf("header %v, JWKS %+v", h, keys)
			}
		}},
		{IDTokenWrongNonce, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if n, _ := c["nonce"].(string); n == "" || n == "n-1" {
				t.Errorf("nonce %v", c["nonce"])
			}
		}},
		{IDTokenWrongAtHash, func(t *testing.T, v url.Values, _, c map[string]any, _ string) {
			if h, _ := c["at_hash"].(string); h == "" || h == halfHash(v.Get("access_token")) {
				t.Errorf("at_hash %v", c["at_hash"])
			}
		}},
		{IDTokenExpired, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if num(c["exp"]) >= now || num(c["iat"]) >= num(c["exp"]) {
				t.Errorf("iat %v exp %v, now %d", c["iat"], c["exp"], now)
			}
		}},
		{IDTokenIssuedInFuture, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if num(c["iat"]) < now+3600 || num(c["exp"]) <= num(c["iat"]) {
				t.Errorf("iat %v exp %v, now %d", c["iat"], c["exp"], now)
			}
		}},
		{IDTokenNotYetValid, func(t *testing.T, _ url.Values, _, c map[string]any, _ string) {
			if num(c["nbf"]) <= now || num(c["iat"]) != now {
				t.Errorf("nbf %v iat %v, now %d", c["nbf"], c["iat"], now)
			}
		}},
	} {
		t.Run(string(tc.m)+" changes the implicit ID token as it says", func(t *testing.T) {
			if err := e.idp.SetMisbehaviour(tc.m); err != nil {
				t.Fatal(err)
			}
			defer e.idp.SetMisbehaviour()
			v := e.implicitTokens(t)
			h, c, sig := jwtParts(t, v.Get("id_token"))
			tc.check(t, v, h, c, sig)
		})
	}
	t.Run("with no switch the same flow gives a good ID token", func(t *testing.T) {
		v := e.implicitTokens(t)
		c := e.verifyJWT(t, v.Get("id_token"))
		if c["iss"] != e.srv.URL+"/" || c["nonce"] != "n-1" || c["at_hash"] != halfHash(v.Get("access_token")) || c["nbf"] != nil {
			t.Errorf("claims %v", c)
		}
		if keys := e.jwks(t); len(keys) != 1 || keys[0].Kid == "" {
			t.Errorf("JWKS %+v", keys)
		}
	})
	t.Run("the switches apply to the token endpoint's ID tokens too", func(t *testing.T) {
		e.idp.SetMisbehaviour(IDTokenWrongIssuer, IDTokenWrongNonce)
		defer e.idp.SetMisbehaviour()
		code := e.pkceCode(t, map[string]string{"nonce": "n-2"})
		_, tok := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {appCallback}, "code_verifier": {verifier}})
		_, c, _ := jwtParts(t, tok["id_token"].(string))
		if c["iss"] != WrongIssuer || c["nonce"] == "n-2" || c["at_hash"] != nil {
			t.Errorf("claims %v", c)
		}
	})
}

func TestRefreshMisbehaviours(t *testing.T) {
	for _, tc := range []struct {
		m            Misbehaviour
		claim, wrong string
	}{
		{RefreshWrongIssuer, "iss", WrongIssuer},
		{RefreshWrongSub, "sub", "auth0|bob"},
	} {
		t.Run(string(tc.m)+" spoils only the refreshed ID token", func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Misbehave = []Misbehaviour{tc.m} })
			code := e.pkceCode(t, map[string]string{"scope": "openid offline_access"})
			_, first := e.exchange(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {appCallback}, "code_verifier": {verifier}})
			if c := e.verifyJWT(t, first["id_token"].(string)); c[tc.claim] == tc.wrong {
				t.Errorf("first ID token %s = %v", tc.claim, c[tc.claim])
			}
			_, again := e.exchange(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first["refresh_token"].(string)}})
			if c := e.verifyJWT(t, again["id_token"].(string)); c[tc.claim] != tc.wrong {
				t.Errorf("refreshed ID token %s = %v, want %v", tc.claim, c[tc.claim], tc.wrong)
			}
		})
	}
}

func TestUserinfoAndDiscoveryMisbehaviours(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("userinfo-invalid-sub answers another user's sub", func(t *testing.T) {
		e.idp.SetMisbehaviour(UserinfoWrongSub)
		defer e.idp.SetMisbehaviour()
		v := e.implicitTokens(t)
		_, c, _ := jwtParts(t, v.Get("id_token"))
		if _, info := e.userinfo(t, v.Get("access_token")); info["sub"] == c["sub"] || info["sub"] == nil {
			t.Errorf("userinfo sub %v, ID token sub %v", info["sub"], c["sub"])
		}
	})
	t.Run("discovery-issuer-mismatch announces another issuer and keeps the endpoints", func(t *testing.T) {
		e.idp.SetMisbehaviour(DiscoveryWrongIssuer)
		defer e.idp.SetMisbehaviour()
		d := e.discovery(t)
		if d["issuer"] != WrongIssuer || d["token_endpoint"] != e.srv.URL+"/oauth/token" {
			t.Errorf("discovery %v", d)
		}
	})
}

func TestTokenEndpointAuthMethodSwitches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         []Misbehaviour
		announced []any
		basicOK   bool
		postOK    bool
	}{
		{"by default both secret methods work", nil, nil, true, true},
		{"token-auth-post-only refuses HTTP Basic", []Misbehaviour{TokenAuthPostOnly}, []any{"client_secret_post"}, false, true},
		{"token-auth-basic-only refuses client_secret_post", []Misbehaviour{TokenAuthBasicOnly}, []any{"client_secret_basic"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Misbehave = tc.m })
			methods, _ := e.discovery(t)["token_endpoint_auth_methods_supported"].([]any)
			if tc.announced != nil && !equalJSON(methods, tc.announced) ||
				tc.announced == nil && !(containsAny(methods, "client_secret_basic") && containsAny(methods, "client_secret_post")) {
				t.Errorf("announced %v", methods)
			}
			for _, basic := range []bool{true, false} {
				code := e.pkceCode(t, nil)
				form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {appCallback}, "code_verifier": {verifier}}
				status, m := e.tokenRequest(t, form, basic)
				want := tc.postOK
				if basic {
					want = tc.basicOK
				}
				if want && status != 200 || !want && (status != 401 || m["error"] != "invalid_client") {
					t.Errorf("basic=%v: %d %v", basic, status, m)
				}
			}
		})
	}
}
