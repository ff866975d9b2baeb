package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

func TestReadBearer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		values  []string
		raw     string
		present bool
		bad     bool
	}{
		{"no Authorization", nil, "", false, false},
		{"Basic is no offer", []string{"Basic YTpi"}, "", false, false},
		{"a scheme that starts like Bearer is no offer", []string{"Bearerx abc"}, "", false, false},
		{"Bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", true, false},
		{"the scheme in any case, spaces around the token", []string{"BEARER   abc.def.ghi "}, "abc.def.ghi", true, false},
		{"an empty token", []string{"Bearer "}, "", true, true},
		{"the scheme alone", []string{"Bearer"}, "", true, true},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", true, true},
		{"a tab after the scheme", []string{"Bearer\tabc"}, "abc", true, false},
		{"Bearer after another scheme's field", []string{"Basic YTpi", "bearer abc"}, "", true, true},
		{"two tokens in one field", []string{"Bearer abc def"}, "", true, true},
	} {
		h := http.Header{}
		if tc.values != nil {
			h["Authorization"] = tc.values
		}
		got := readBearer(h)
		if got.raw != tc.raw || got.present != tc.present || (got.bad != nil) != tc.bad {
			t.Errorf("%s: %+v, want raw %q present %v bad %v", tc.name, got, tc.raw, tc.present, tc.bad)
		}
	}
}

func TestAccessTokenTypes(t *testing.T) {
	t.Parallel()
	for v, want := range map[any]bool{nil: true, "at+jwt": true, "application/at+jwt": true, "JWT": true, "jwt": true,
		"logout+jwt": false, "id_token": false, "": false, 7.0: false, "application/jwt+at": false} {
		if got := accessTokenTyp(v); got != want {
			t.Errorf("typ %v: %v, want %v", v, got, want)
		}
	}
}

func TestKeyMatching(t *testing.T) {
	t.Parallel()
	f := &fetchedKeys{keys: []jose.JSONWebKey{{KeyID: "a", Algorithm: "RS256"}, {KeyID: "b", Algorithm: "ES256"}, {KeyID: "c"}}}
	for _, tc := range []struct {
		kid, alg string
		want     []string
	}{
		{"a", "RS256", []string{"a"}},
		{"b", "RS256", []string{"b"}}, // the key's own algorithm is go-jose's to check
		{"z", "RS256", nil},
		{"", "RS256", []string{"a", "c"}},
		{"", "ES256", []string{"b", "c"}},
	} {
		var got []string
		for _, k := range f.match(tc.kid, tc.alg) {
			got = append(got, k.KeyID)
		}
		if strconv.Quote(joinGroups(got)) != strconv.Quote(joinGroups(tc.want)) {
			t.Errorf("match(%q, %q) = %q, want %q", tc.kid, tc.alg, got, tc.want)
		}
	}
}

// bearerBench is a handler that accepts bearer tokens for testAPI signed by key, with the
// provider's keys already fetched: what the hot path sees once the module has run a while.
func bearerBench(tb testing.TB) (*Handler, *rsa.PrivateKey) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	h := hotPathHandler(tb)
	h.Bearer = &BearerConfig{Audience: testAPI, ClockSkew: caddy.Duration(defaultBearerSkew)}
	h.bearerAudience = testAPI
	h.bearers = newExpiringCache[*bearer](maxBearersPerShard)
	h.decisions = newDecisionCache()
	p := &provider{cfg: providerConfig{issuer: h.Issuer, now: h.now, logger: zap.NewNop()}, ctx: context.Background()}
	keys := &keySet{now: h.now, logger: zap.NewNop()}
	keys.cur.Store(&fetchedKeys{keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}, at: unitNow})
	p.cur.Store(&discovered{issuer: h.Issuer, keys: keys})
	h.provider = p
	return h, key
}

// signBearer signs claims RS256 with key, kid k1.
func signBearer(tb testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	tb.Helper()
	return signBearerWith(tb, jose.SigningKey{Algorithm: jose.RS256, Key: key}, "k1", claims)
}

// signBearerWith signs claims with key, naming kid.
func signBearerWith(tb testing.TB, key jose.SigningKey, kid string, claims map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := signer.Sign(b)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func typicalBearerClaims() map[string]any {
	return map[string]any{"iss": "https://idp.example.com/", "sub": "auth0|5f1c2d3e4f5a6b7c8d9e0f1a",
		"aud": []string{testAPI, "https://idp.example.com/userinfo"}, "azp": "cli", "scope": "openid read:reports",
		"iat": unitNow.Add(-time.Minute).Unix(), "exp": unitNow.Add(time.Hour).Unix(),
		"email": "alice@example.com", "email_verified": true, "groups": []string{"staff", "engineering"}}
}

func TestTheBenchmarkTokenIsAccepted(t *testing.T) {
	t.Parallel()
	h, key := bearerBench(t)
	tok := signBearer(t, key, typicalBearerClaims())
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/api/reports", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	called := false
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called = true; return nil })
	if err := h.ServeHTTP(w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil), next); err != nil || !called {
		t.Fatalf("ServeHTTP: %v, next called %v, status %d %s", err, called, w.Code, w.Body)
	}
	if r.Header.Get("X-Forwarded-User") != "auth0|5f1c2d3e4f5a6b7c8d9e0f1a" || r.Header.Get("X-Department") != "" {
		t.Errorf("headers %q", r.Header)
	}
}

// BenchmarkBearer is the authenticated path of an API client: its token verified once and
// then found in the cache, and verified every time (a new token per request, say).
func BenchmarkBearer(b *testing.B) {
	h, key := bearerBench(b)
	tok := signBearer(b, key, typicalBearerClaims())
	base := httptest.NewRequest(http.MethodGet, "https://app.example.com/api/reports?page=2", nil)
	base.Header.Set("Accept", "application/json")
	base.Header.Set("User-Agent", "bench")
	w := &discardWriter{h: http.Header{}}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	authz := []string{"Bearer " + tok}
	run := func(b *testing.B, uncached bool) {
		b.ReportAllocs()
		for b.Loop() {
			for _, name := range h.headers.managed {
				delete(base.Header, name)
			}
			base.Header["Authorization"] = authz
			if uncached {
				h.bearers.drop(tok)
			}
			r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
		if base.Header.Get("X-Forwarded-User") != "auth0|5f1c2d3e4f5a6b7c8d9e0f1a" {
			b.Fatalf("the request was not authenticated: %q", base.Header)
		}
	}
	b.Run("cached", func(b *testing.B) { run(b, false) })
	b.Run("uncached", func(b *testing.B) { run(b, true) })
}

// jwksServer serves body as a key set and counts the fetches; down makes it answer 503.
type jwksServer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	down    atomic.Bool
	body    atomic.Value // string
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	j := &jwksServer{}
	j.body.Store(body)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		if j.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(j.body.Load().(string)))
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func publicJWK(t *testing.T, key *rsa.PrivateKey, kid string) string {
	b, err := json.Marshal(jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTheKeySet(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok := signBearer(t, key, typicalBearerClaims())
	jws, err := jose.ParseSignedCompact(tok, bearerAlgs)
	if err != nil {
		t.Fatal(err)
	}
	now := unitNow
	newSet := func(j *jwksServer) *keySet {
		return &keySet{url: j.srv.URL, client: j.srv.Client(), timeout: time.Second, now: func() time.Time { return now },
			logger: zap.NewNop()}
	}

	t.Run("a key of a type it does not know leaves the others usable", func(t *testing.T) {
		j := newJWKSServer(t, `{"keys":[{"kty":"XYZ","kid":"new-curve","crv":"X9"},`+publicJWK(t, key, "k1")+`]}`)
		if _, err := newSet(j).verify(context.Background(), jws); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("old keys go on verifying while newer ones are fetched, even when the fetch fails", func(t *testing.T) {
		j := newJWKSServer(t, `{"keys":[`+publicJWK(t, key, "k1")+`]}`)
		k := newSet(j)
		if _, err := k.verify(context.Background(), jws); err != nil {
			t.Fatal(err)
		}
		j.down.Store(true)
		now = now.Add(keysMaxAge + time.Minute)
		if _, err := k.verify(context.Background(), jws); err != nil {
			t.Fatalf("with hour-old keys and the provider down: %v", err)
		}
		k.fetchMu.Lock() // held by the background fetch until it is done
		n := j.fetches.Load()
		k.fetchMu.Unlock()
		if n != 2 {
			t.Errorf("%d fetches, want the first and one background refresh", n)
		}
	})
	t.Run("no keys and no provider: unavailable, not a bad token", func(t *testing.T) {
		j := newJWKSServer(t, "")
		j.down.Store(true)
		if _, err := newSet(j).verify(context.Background(), jws); !errors.Is(err, errKeysUnavailable) {
			t.Errorf("verify: %v, want errKeysUnavailable", err)
		}
	})
}

// FuzzBearer sends arbitrary Authorization values, and tokens made of a valid one's pieces
// with arbitrary claims, to a bearer route: each gets an answer of the RFC 6750 kind, never a
// panic or a 500, and nothing unverified reaches the app.
func FuzzBearer(f *testing.F) {
	h, key := bearerBench(f)
	good := signBearer(f, key, typicalBearerClaims())
	// Tokens with fuzzed claims are signed ES256: signing RSA under the fuzzer's
	// instrumentation would leave it a few inputs a minute.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	keys := h.provider.cur.Load().keys
	f2 := *keys.cur.Load()
	f2.keys = append(f2.keys, jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"})
	keys.cur.Store(&f2)
	ecKey := jose.SigningKey{Algorithm: jose.ES256, Key: ec}
	parts := strings.Split(good, ".")
	for _, seed := range []string{"Bearer " + good, "Bearer", "bearer\t" + parts[0] + "..", "Bearer a.b.c",
		"Bearer " + parts[0] + "." + parts[1] + ".", "Basic YTpi", "Bearer  " + good + " x", "Bearer e30.e30.e30"} {
		f.Add(seed, "")
	}
	f.Add("", `{"iss":"https://idp.example.com/","sub":"s","aud":"`+testAPI+`","exp":1e30,"nbf":"x","act":{"sub":[]}}`)
	f.Add("", `{"iss":"https://idp.example.com/","sub":"s","aud":["`+testAPI+`",7],"exp":-1,"scp":[null,{}]}`)
	f.Fuzz(func(t *testing.T, authorization, claims string) {
		if claims != "" {
			var c map[string]any
			if json.Unmarshal([]byte(claims), &c) != nil {
				return
			}
			authorization = "Bearer " + signBearerWith(t, ecKey, "k2", c)
		}
		r := httptest.NewRequest(http.MethodGet, "https://app.example.com/api", nil)
		r.Header["Authorization"] = []string{authorization}
		w := httptest.NewRecorder()
		reached := false
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached = true; return nil })
		if err := h.ServeHTTP(w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil), next); err != nil {
			t.Fatalf("ServeHTTP returned %v", err)
		}
		switch {
		case reached && w.Code != http.StatusOK:
			t.Fatalf("the app was reached and the answer is %d", w.Code)
		case reached && (r.Header.Get("X-Forwarded-User") == "" || !strings.Contains(authorization, good) && claims == ""):
			t.Fatalf("an unverified credential reached the app: %q", authorization)
		case !reached && w.Code != http.StatusBadRequest && w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden:
			t.Fatalf("Authorization %q: status %d", authorization, w.Code)
		}
	})
}
