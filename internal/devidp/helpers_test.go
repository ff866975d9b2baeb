package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	appID       = "app"
	appSecret   = "app-secret"
	appCallback = "https://app.example.test/oauth2/callback"
	appHome     = "https://app.example.test/"
	adminToken  = "global-client-token"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-dBjftJeZ4CV"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

// sharedKey is generated once: a 2048-bit key per test would dominate the run time.
func sharedKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("generating key: %v", err)
		}
		testKey = k
	})
	return testKey
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a provider behind an httptest server, with a browser that keeps cookies and does
// not follow redirects.
type env struct {
	idp     *Server
	srv     *httptest.Server
	clock   *clock
	browser *http.Client
}

func newEnv(t *testing.T, change func(*Config)) *env {
	t.Helper()
	e := &env{clock: &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.idp.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	cfg := Config{
		Issuer: e.srv.URL + "/",
		Clients: []Client{
			{ID: appID, Secret: appSecret, RedirectURIs: []string{appCallback}, PostLogoutRedirectURIs: []string{appHome}},
			{ID: "other", Secret: "other-secret", RedirectURIs: []string{"https://other.example.test/cb"},
				PostLogoutRedirectURIs: []string{"https://other.example.test/"}},
		},
		AdminToken: adminToken,
		Now:        e.clock.Now,
		Key:        sharedKey(t),
	}
	if change != nil {
		change(&cfg)
	}
	idp, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.idp = idp
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return e
}

func (e *env) url(path string) string { return e.srv.URL + "/" + strings.TrimPrefix(path, "/") }

// do sends req with the browser and returns the response with its body read.
func (e *env) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := e.browser.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (e *env) get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return e.do(t, req)
}

func (e *env) post(t *testing.T, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(t, req)
}

// authorize sends the browser to /authorize with the defaults of a code flow, overridden by
// params (an empty value removes a parameter).
func (e *env) authorize(t *testing.T, params map[string]string) (*http.Response, string) {
	t.Helper()
	q := url.Values{"client_id": {appID}, "redirect_uri": {appCallback}, "response_type": {"code"},
		"scope": {"openid profile email"}, "state": {"st-1"}}
	for k, v := range params {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return e.get(t, e.url("authorize?"+q.Encode()))
}

// redirected returns the query (or fragment) parameters of a redirect to appCallback.
func (e *env) redirected(t *testing.T, resp *http.Response, fragment bool) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status = %d, want 302", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("bad Location %q: %v", resp.Header.Get("Location"), err)
	}
	raw := u.RawQuery
	if fragment {
		raw = u.Fragment
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("bad parameters in %q: %v", resp.Header.Get("Location"), err)
	}
	return v
}

// exchange posts form to the token endpoint, authenticating as app with client_secret_post.
func (e *env) exchange(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	if form.Get("client_id") == "" {
		form.Set("client_id", appID)
		form.Set("client_secret", appSecret)
	}
	resp, body := e.post(t, e.url("oauth/token"), form)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("token answer %q is not JSON: %v", body, err)
	}
	return resp.StatusCode, m
}

// userinfo calls /userinfo with token.
func (e *env) userinfo(t *testing.T, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url("userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, body := e.do(t, req)
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	return resp.StatusCode, m
}

// verifyJWT checks token's RS256 signature by hand with the key the JWKS publishes under
// the token's kid, and returns its claims.
func (e *env) verifyJWT(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", token)
	}
	var header struct{ Alg, Kid string }
	decodeSegment(t, parts[0], &header)
	if header.Alg != "RS256" {
		t.Fatalf("alg = %q, want RS256", header.Alg)
	}
	_, body := e.get(t, e.url(".well-known/jwks.json"))
	var set struct {
		Keys []struct{ Kty, Kid, Alg, N, E string }
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("JWKS %q: %v", body, err)
	}
	for _, k := range set.Keys {
		if k.Kid != header.Kid {
			continue
		}
		n, _ := b64.DecodeString(k.N)
		ex, _ := b64.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(ex).Int64())}
		sig, _ := b64.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("signature does not verify: %v", err)
		}
		var claims map[string]any
		decodeSegment(t, parts[1], &claims)
		return claims
	}
	t.Fatalf("no JWKS key with kid %q", header.Kid)
	return nil
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	raw, err := b64.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q: %v", seg, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("segment %s: %v", raw, err)
	}
}

// s256 is the PKCE S256 challenge of v.
func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return b64.EncodeToString(sum[:])
}

// mustImpersonate mints a link in-process, for app and its callback.
func (e *env) mustImpersonate(t *testing.T, p ImpersonateParams) string {
	t.Helper()
	if p.ClientID == "" {
		p.ClientID = appID
	}
	if p.ImpersonatorID == "" {
		p.ImpersonatorID = "auth0|admin"
	}
	link, err := e.idp.Impersonate(p)
	if err != nil {
		t.Fatalf("Impersonate: %v", err)
	}
	return link
}

func sha256Of(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// discovery fetches and decodes the discovery document.
func (e *env) discovery(t *testing.T) map[string]any {
	t.Helper()
	_, body := e.get(t, e.url(".well-known/openid-configuration"))
	var d map[string]any
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("discovery %q: %v", body, err)
	}
	return d
}

// tokenRequest posts form to the token endpoint as app, with HTTP Basic or client_secret_post.
func (e *env) tokenRequest(t *testing.T, form url.Values, basic bool) (int, map[string]any) {
	t.Helper()
	if !basic {
		return e.exchange(t, form)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url("oauth/token"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(appID), url.QueryEscape(appSecret))
	resp, body := e.do(t, req)
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	return resp.StatusCode, m
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func containsAny(list []any, v any) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

var (
	key2Once sync.Once
	testKey2 *rsa.PrivateKey
)

// sharedKey2 is a second key, for rotation, generated once.
func sharedKey2(t *testing.T) *rsa.PrivateKey {
	key2Once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("generating key: %v", err)
		}
		testKey2 = k
	})
	return testKey2
}
