package caddymodule

import (
	"encoding/json"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// harness runs real Caddy in-process with this module in front of an upstream that echoes
// what it received, against the development identity provider. Tests that use it must not
// run in parallel: Caddy's running configuration is process-wide.
type harness struct {
	t        *testing.T
	idp      *devidp.Server
	idpURL   string // issuer, with trailing slash
	idpSrv   *httptest.Server
	siteURL  string // http://127.0.0.1:PORT
	upstream *echoUpstream
	audit    *observer.ObservedLogs
	// tokenStatus, when set, makes the provider's token endpoint answer with that status and
	// an OAuth error (429 → "slow_down", others → "invalid_grant"), to test refresh failures.
	tokenStatus *atomic.Int32
	// refreshGrants counts the refresh_token grants the provider answered; slowRefresh, when
	// set, holds each for that long so that concurrent refreshes overlap.
	refreshGrants *atomic.Int32
	slowRefresh   *atomic.Int64
	// tokenRequests records every request the provider's token endpoint received.
	tokenRequests *requestLog
	handler       *Handler
	clock         *testClock
	storageDir    string // Caddy's storage (file_system), shared with a second instance
	client        *http.Client
}

// testClock is the shared clock of the handler and the provider; tests move it instead of sleeping.
type testClock struct{ t atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *testClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

const (
	testClientID     = "app"
	testClientSecret = "app-secret-value"
	testAdminToken   = "admin-token-for-tests"
	testSecret       = "0123456789abcdef0123456789abcdef-test"
)

var caddyMu sync.Mutex

// newHarness starts the provider and Caddy. handlerCfg may change the handler's configuration,
// which starts out with the provider, the test client, its secret and plain-http cookies;
// idpCfg may change the provider's.
func newHarness(t *testing.T, handlerCfg func(*Handler), idpCfg func(*devidp.Config)) *harness {
	t.Helper()
	return newRoutedHarness(t, handlerCfg, idpCfg, nil)
}

// newRoutedHarness is newHarness with the handlers in front of the upstream chosen by route,
// which is given the oidc_auth handler's JSON; nil means that handler alone. It is for what the
// Handler struct cannot express: the module inside a subroute, a handler beside it.
func newRoutedHarness(t *testing.T, handlerCfg func(*Handler), idpCfg func(*devidp.Config),
	route func(t *testing.T, oidcAuth json.RawMessage) []json.RawMessage) *harness {
	t.Helper()
	h, port := startHarness(t, idpCfg)
	hc := h.handlerConfig(handlerCfg)
	handlers := []json.RawMessage{handlerJSON(t, "oidc_auth", &hc)}
	if route != nil {
		handlers = route(t, handlers[0])
	}
	h.load(port, handlers...)
	return h
}

// handlerConfig is the handler's configuration for the harness's provider and test client,
// with plain-http cookies, changed by cfg (nil: as it is).
func (h *harness) handlerConfig(cfg func(*Handler)) Handler {
	hc := Handler{
		Issuer:         h.idpURL,
		ClientID:       testClientID,
		ClientSecret:   testClientSecret,
		SessionSecrets: []string{testSecret},
		Cookie:         &CookieConfig{Insecure: true},
	}
	if cfg != nil {
		cfg(&hc)
	}
	if hc.Assertion != nil && hc.Assertion.Issuer == "" && !strings.Contains(hc.RedirectURI, "://") {
		hc.Assertion.Issuer = h.siteURL // the module takes no issuer from the Host header
	}
	return hc
}

// newCaddyfileHarness is newHarness for a site written as a Caddyfile: site is the inside of
// the site block, where $ISSUER, $CLIENT_ID, $CLIENT_SECRET, $SECRET and $UPSTREAM stand for
// the provider, the test client, a session secret and the echoing upstream.
func newCaddyfileHarness(t *testing.T, site string, idpCfg func(*devidp.Config)) *harness {
	t.Helper()
	return newCaddyfileHarnessWithOptions(t, "", site, idpCfg)
}

// newCaddyfileHarnessWithOptions is newCaddyfileHarness with global options (the same $
// names stand in them).
func newCaddyfileHarnessWithOptions(t *testing.T, options, site string, idpCfg func(*devidp.Config)) *harness {
	t.Helper()
	h, _ := startHarness(t, idpCfg)
	vars := strings.NewReplacer("$ISSUER", h.idpURL, "$CLIENT_ID", testClientID, "$CLIENT_SECRET", testClientSecret,
		"$SECRET", testSecret, "$UPSTREAM", h.upstream.addr)
	globals := strings.Replace(caddyfileGlobals, "\tadmin off\n", "\tadmin off\n"+vars.Replace(options)+"\n", 1)
	loadCaddyfile(t, globals+h.siteURL+" {\n"+vars.Replace(site)+"\n}\n")
	h.inject()
	return h
}

// startHarness starts the provider, the upstream and a browser-like client, holding the Caddy
// lock until the test ends; Caddy is the caller's to load, on the returned port.
func startHarness(t *testing.T, idpCfg func(*devidp.Config)) (*harness, string) {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)

	h := &harness{t: t, clock: new(testClock), tokenStatus: new(atomic.Int32),
		refreshGrants: new(atomic.Int32), slowRefresh: new(atomic.Int64), tokenRequests: new(requestLog)}
	h.clock.t.Store(time.Now().UnixNano())
	port := freePort(t)
	h.siteURL = "http://127.0.0.1:" + port
	h.storageDir = t.TempDir()

	h.idpSrv = httptest.NewUnstartedServer(nil)
	h.idpURL = "http://" + h.idpSrv.Listener.Addr().String() + "/"
	cfg := devidp.Config{
		Issuer:     h.idpURL,
		AdminToken: testAdminToken,
		Clients: []devidp.Client{{
			ID: testClientID, Secret: testClientSecret,
			RedirectURIs: []string{h.siteURL + "/oauth2/callback",
				h.siteURL + "/oauth2/staff/callback", h.siteURL + "/oauth2/partners/callback"},
			PostLogoutRedirectURIs: []string{h.siteURL + "/", h.siteURL + "/bye"},
		}},
		Now: h.clock.Now,
	}
	if idpCfg != nil {
		idpCfg(&cfg)
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		t.Fatalf("starting provider: %v", err)
	}
	h.idp = idp
	h.idpSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oauth/token") {
			h.tokenRequests.record(r)
		}
		if st := int(h.tokenStatus.Load()); st != 0 && strings.HasSuffix(r.URL.Path, "/oauth/token") {
			code := "invalid_grant"
			if st == http.StatusTooManyRequests {
				code = "slow_down"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(st)
			_, _ = w.Write([]byte(`{"error":"` + code + `"}`))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/oauth/token") && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" {
			h.refreshGrants.Add(1)
			time.Sleep(time.Duration(h.slowRefresh.Load()))
		}
		idp.ServeHTTP(w, r)
	})
	h.idpSrv.Start()
	t.Cleanup(h.idpSrv.Close)
	h.idp.SetAutoLogin("alice", "")

	h.upstream = newEchoUpstream(t)
	jar, _ := cookiejar.New(nil)
	h.client = &http.Client{Jar: jar, Timeout: 20 * time.Second}
	return h, port
}

// requestLog records what requests carried: their form and whether they had HTTP Basic
// credentials.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	form  url.Values
	basic bool
}

func (l *requestLog) record(r *http.Request) {
	_ = r.ParseForm() // the provider reads the parsed form as it is
	_, _, basic := r.BasicAuth()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, loggedRequest{form: maps.Clone(r.PostForm), basic: basic})
}

// all returns the requests recorded so far, oldest first.
func (l *requestLog) all() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loggedRequest(nil), l.reqs...)
}

// handlerJSON encodes an HTTP handler module's configuration as Caddy's JSON config names it:
// its fields, and "handler": name.
func handlerJSON(t *testing.T, name string, cfg any) json.RawMessage {
	t.Helper()
	var warnings []caddyconfig.Warning
	raw := caddyconfig.JSONModuleObject(cfg, "handler", name, &warnings)
	if len(warnings) > 0 || raw == nil {
		t.Fatalf("encoding the %s handler's config: %v", name, warnings)
	}
	return raw
}

// load runs Caddy with one site on port whose route is the handlers, then the reverse proxy
// to the upstream.
func (h *harness) load(port string, handlers ...json.RawMessage) {
	t := h.t
	if err := caddy.Load(h.siteConfig(port, handlers...), true); err != nil {
		t.Fatalf("loading Caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	h.inject()
}

// siteConfig is Caddy's configuration of one site on port whose route is the handlers, then
// the reverse proxy to the upstream.
func (h *harness) siteConfig(port string, handlers ...json.RawMessage) []byte {
	t := h.t
	proxy := &reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: h.upstream.addr}}}
	app := caddyhttp.App{Servers: map[string]*caddyhttp.Server{"site": {
		Listen:    []string{"127.0.0.1:" + port},
		AutoHTTPS: &caddyhttp.AutoHTTPSConfig{Disabled: true},
		Routes:    caddyhttp.RouteList{{HandlersRaw: append(handlers, handlerJSON(t, "reverse_proxy", proxy))}},
	}}}
	cfg := caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true},
		Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{"default": {BaseLog: caddy.BaseLog{Level: "ERROR"}}}},
		AppsRaw: caddy.ModuleMap{"http": caddyconfig.JSON(app, nil)},
	}
	if h.storageDir != "" {
		cfg.StorageRaw = caddyconfig.JSON(map[string]string{"module": "file_system", "root": h.storageDir}, nil)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// inject gives every provisioned handler, before any request, the test's clock and a fresh
// observed audit log.
func (h *harness) inject() {
	core, logs := observer.New(zapcore.InfoLevel)
	h.audit = logs
	for _, p := range provisionedHandlers(h.t) {
		p.now = h.clock.Now
		if p.assertion != nil {
			p.assertion.keys.setClock(h.clock.Now)
		}
		if ms, ok := unwrapStore(p.store).(*store.Memory); ok {
			ms.SetClock(h.clock.Now)
		}
		p.audit = zap.New(core).Named("http.handlers.oidc_auth.audit")
		h.handler = p
	}
}

// provisionedHandlers finds the oidc_auth handlers of the running configuration, in its
// servers' routes and their subroutes.
func provisionedHandlers(t *testing.T) []*Handler {
	t.Helper()
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatalf("finding the http app: %v", err)
	}
	var found []*Handler
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, rt := range routes {
			for _, mh := range rt.Handlers {
				switch v := mh.(type) {
				case *Handler:
					found = append(found, v)
					found = append(found, v.choices...)
				case *caddyhttp.Subroute:
					walk(v.Routes)
				}
			}
		}
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		walk(srv.Routes)
	}
	if len(found) == 0 {
		t.Fatal("the configuration has no oidc_auth handler")
	}
	return found
}

func freePort(t testing.TB) string {
	t.Helper()
	// Below the kernel's ephemeral range (32768 and up here): a port handed out and closed
	// cannot then be taken, before its user binds it, by an outgoing connection's source port
	// or another package's listener on :0. A Redis Cluster node's bus port (this + 10000)
	// stays below it too.
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(20000+rand.IntN(2700)))
		if err != nil {
			continue
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		return port
	}
	t.Fatal("no free port between 20000 and 22700")
	return ""
}

// echoUpstream is the legacy application: it answers with what it received.
type echoUpstream struct {
	addr string
	mu   sync.Mutex
	last *http.Request
	hits int
}

type echoed struct {
	Path    string      `json:"path"`
	Headers http.Header `json:"headers"`
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	e := &echoUpstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.last = r
		e.hits++
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Path: r.URL.RequestURI(), Headers: r.Header})
	}))
	t.Cleanup(srv.Close)
	e.addr = srv.Listener.Addr().String()
	return e
}

func (e *echoUpstream) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits
}

// result is a response, read whole.
type result struct {
	status int
	header http.Header
	body   string
	url    *url.URL // the final URL after redirects
}

// echo decodes the upstream's echo from the body; ok is false when the upstream did not answer.
func (r result) echo() (echoed, bool) {
	var e echoed
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Headers == nil {
		return e, false
	}
	return e, true
}

// do sends a request with the harness's cookie jar, following redirects.
func (h *harness) do(req *http.Request) result {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
}

// browse is a browser navigation to path (or an absolute URL) on the site.
func (h *harness) browse(path string, headers ...string) result {
	h.t.Helper()
	target := path
	if strings.HasPrefix(path, "/") {
		target = h.siteURL + path
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.do(req)
}

// api is a non-browser request to an absolute URL or a site path.
func (h *harness) api(method, target string, headers ...string) result {
	h.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = h.siteURL + target
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.do(req)
}

// postForm posts an urlencoded form to an absolute URL or a site path.
func (h *harness) postForm(target string, form url.Values, headers ...string) result {
	h.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = h.siteURL + target
	}
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return h.do(req)
}

// login signs the browser in as the user with this provider key and returns what the
// upstream saw of the landing request.
func (h *harness) login(userKey string) echoed {
	h.t.Helper()
	h.idp.SetAutoLogin(userKey, "")
	res := h.browse("/")
	e, ok := res.echo()
	if res.status != http.StatusOK || !ok {
		h.t.Fatalf("login as %s: status %d at %s, body %.300s", userKey, res.status, res.url, res.body)
	}
	return e
}

// events returns the names of the audit events logged so far, in order.
func (h *harness) events() []string {
	var names []string
	for _, e := range h.audit.All() {
		names = append(names, e.Message)
	}
	return names
}

// lastEvent returns the last audit event called name, with its fields.
func (h *harness) lastEvent(name string) (map[string]any, bool) {
	all := h.audit.FilterMessage(name).All()
	if len(all) == 0 {
		return nil, false
	}
	return all[len(all)-1].ContextMap(), true
}

// cookieNames lists the names of the cookies the jar holds for the site.
func (h *harness) cookieNames() []string {
	u, _ := url.Parse(h.siteURL)
	var names []string
	for _, c := range h.client.Jar.Cookies(u) {
		names = append(names, c.Name)
	}
	return names
}

// noRedirects returns a copy of the client that stops at the first response.
func (h *harness) noRedirects() *http.Client {
	c := *h.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}
