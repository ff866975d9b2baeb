package caddymodule

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The provider's faults beyond its endpoints' (e2e_rpcert_test.go): down when Caddy starts,
// down in the middle of sessions, slow, failing under a burst of requests, and refusing a
// refresh. Caddy keeps running through all of them, holds no request longer than the provider
// timeout, and leaves no goroutine behind.

// holdSlack is what a request may take beyond the provider timeout: the module's own work
// and the test's scheduling, with the race detector on a small machine.
const holdSlack = 700 * time.Millisecond

// unreachablePage is the sentence of the 502 page for a provider that cannot be reached.
const unreachablePage = "identity provider is unreachable"

// shortenProviderTimeout bounds every provider call of the running handlers by faultTimeout,
// as certHarness does for the harnesses it builds.
func shortenProviderTimeout(t *testing.T, h *harness) {
	t.Helper()
	for _, p := range provisionedHandlers(t) {
		p.provider.cfg.timeout = faultTimeout
		p.provider.client.Timeout = faultTimeout
	}
	t.Cleanup(h.idpSrv.CloseClientConnections)
}

// listenAt listens at addr again, where an earlier server was closed.
func listenAt(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening at the provider's address again: %v", err)
	}
	return l
}

// serveProvider serves the harness's provider on l: the provider coming (back) up.
func serveProvider(t *testing.T, h *harness, l net.Listener) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h.idpSrv.Config.Handler)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
}

// dropConnectionsAt listens at addr and closes every connection at once, without a byte:
// a provider that is down, whose every connection attempt the test counts.
func dropConnectionsAt(t *testing.T, addr string) *atomic.Int32 {
	t.Helper()
	l := listenAt(t, addr)
	dials, done := new(atomic.Int32), make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return dials
}

// timing is a round tripper that remembers the longest round trip to one host.
type timing struct {
	next    http.RoundTripper
	host    string
	mu      sync.Mutex
	longest time.Duration
	path    string // the request that took longest
}

func (tm *timing) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := tm.next.RoundTrip(r)
	if r.URL.Host == tm.host {
		took := time.Since(start)
		tm.mu.Lock()
		if took > tm.longest {
			tm.longest, tm.path = took, r.Method+" "+r.URL.Path
		}
		tm.mu.Unlock()
	}
	return resp, err
}

// timed switches the browser to a transport that times every request to the site.
func (h *harness) timed() *timing {
	site, _ := url.Parse(h.siteURL)
	tm := &timing{next: http.DefaultTransport, host: site.Host}
	h.client.Transport = tm
	return tm
}

func TestProviderUnreachableAtStart(t *testing.T) {
	t.Run("Caddy starts, answers 502 while the provider is down, and signs in once it is up, without a restart", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		addr := h.idpSrv.Listener.Addr().String()
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		h.idpSrv.Close()
		h.loadSite(nil) // Caddy starts with nothing listening at the provider's address
		running := h.handler

		res := h.browse("/")
		if res.status != http.StatusBadGateway || !strings.Contains(res.body, unreachablePage) {
			t.Fatalf("a navigation while the provider is down: %d %.300s", res.status, res.body)
		}
		if res := h.browse("/oauth2/start?rd=%2Fpage"); res.status != http.StatusBadGateway {
			t.Errorf("the start endpoint while the provider is down: %d", res.status)
		}
		if res := h.api(http.MethodGet, "/api"); res.status != http.StatusUnauthorized {
			t.Errorf("an API request, which needs no provider: %d", res.status)
		}
		if h.upstream.count() != 0 {
			t.Errorf("the application was reached")
		}

		serveProvider(t, h, listenAt(t, addr))
		// The failed discovery is remembered for discoveryRetry, so a provider that is down is
		// not asked again by every request.
		if res := h.browse("/"); res.status != http.StatusBadGateway {
			t.Errorf("within discoveryRetry of the failure: %d, want the remembered 502", res.status)
		}
		h.clock.Advance(discoveryRetry)
		if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("the login once the provider is up: %v", e.Headers)
		}
		if ps := provisionedHandlers(t); len(ps) != 1 || ps[0] != running {
			t.Errorf("the handler was replaced: the login needed a reload")
		}
	})

	t.Run("discovery answering 500 at the start heals the same way", func(t *testing.T) {
		h := certHarness(t, nil, devidp.Discovery500)
		if res := h.browse("/"); res.status != http.StatusBadGateway || !strings.Contains(res.body, unreachablePage) {
			t.Fatalf("a navigation while discovery fails: %d %.300s", res.status, res.body)
		}
		if err := h.idp.SetMisbehaviour(); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(discoveryRetry)
		if e := h.login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("the login once discovery answers: %v", e.Headers)
		}
	})
}

func TestProviderUnreachableMidSession(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.login("alice")
	id := h.sessionID()
	// Another browser is at the provider when it goes down: it has its code, not its session.
	late := h.impOtherBrowser()
	_, authorize := late.startAttempt()
	back := late.impNavigate(authorize)
	callback := back.header.Get("Location")
	if back.status != http.StatusFound || !strings.HasPrefix(callback, h.siteURL+"/oauth2/callback?") {
		t.Fatalf("the provider's answer: %d to %q", back.status, callback)
	}

	addr := h.idpSrv.Listener.Addr().String()
	h.idpSrv.Close()
	dials := dropConnectionsAt(t, addr)

	t.Run("cookie sessions go on without a call to the provider", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if e, ok := h.api(http.MethodGet, "/api").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
				t.Fatalf("API request %d while the provider is down: %v", i+1, e.Headers)
			}
			if e, ok := h.browse("/page").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
				t.Fatalf("navigation %d while the provider is down: %v", i+1, e.Headers)
			}
		}
		if got := h.sessionID(); got != id {
			t.Errorf("the session is %q, was %q", got, id)
		}
		if n := dials.Load(); n != 0 {
			t.Errorf("authenticated requests called the provider %d times", n)
		}
		h.impNoEvent(evSessionRejected)
	})

	t.Run("a login completing now gets the 502 page", func(t *testing.T) {
		res := late.browse(callback)
		if res.status != http.StatusBadGateway || !strings.Contains(res.body, unreachablePage) {
			t.Fatalf("the callback while the provider is down: %d %.300s", res.status, res.body)
		}
		h.impAudit(evLoginFailed, map[string]string{"reason": "code exchange failed"})
		if dials.Load() == 0 {
			t.Errorf("the code exchange never reached the provider's address")
		}
		late.impNoSession()
	})

	t.Run("a new login is still sent to the provider, which the module cannot see is down", func(t *testing.T) {
		res := h.impOtherBrowser().impNavigate(h.siteURL + "/")
		if res.status != http.StatusFound || !strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Fatalf("a navigation without a session: %d to %q", res.status, res.header.Get("Location"))
		}
	})
}

func TestEveryProviderCallIsBounded(t *testing.T) {
	login := func(h *harness) result { return h.browse("/") }
	for _, tc := range []struct {
		name   string
		fault  devidp.Misbehaviour
		status int
		do     func(*harness) result
	}{
		{"discovery not answering, at a login", devidp.DiscoverySlow, http.StatusBadGateway, login},
		{"discovery not answering, at a logout", devidp.DiscoverySlow, http.StatusFound, func(h *harness) result {
			req, _ := http.NewRequest(http.MethodPost, h.siteURL+"/oauth2/logout", nil)
			req.Header.Set("Origin", h.siteURL)
			resp, err := h.noRedirects().Do(req)
			if err != nil {
				h.t.Fatal(err)
			}
			resp.Body.Close()
			return result{status: resp.StatusCode, header: resp.Header}
		}},
		{"the token endpoint not answering the code exchange", devidp.TokenEndpointSlow, http.StatusBadGateway, login},
		{"the key set not answering", devidp.JWKSSlow, http.StatusBadGateway, login},
		{"userinfo not answering", devidp.UserinfoSlow, http.StatusBadGateway, login},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := certHarness(t, nil, tc.fault)
			tm := h.timed()
			if res := tc.do(h); res.status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", res.status, tc.status, res.body)
			}
			checkHeld(t, tm)
		})
	}

	t.Run("the token endpoint not answering a refresh", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		shortenProviderTimeout(t, h)
		h.login("alice")
		if err := h.idp.SetMisbehaviour(devidp.TokenEndpointSlow); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(9*time.Minute + 30*time.Second) // due for renewal, not yet expired
		tm := h.timed()
		if e, ok := h.api(http.MethodGet, "/").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("a refresh the provider does not answer ended the session: %v", e.Headers)
		}
		checkHeld(t, tm)
	})
}

// checkHeld checks that the slowest request to the site waited for the provider timeout (the
// fault was in force) and not much longer (the call was bounded).
func checkHeld(t *testing.T, tm *timing) {
	t.Helper()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	t.Logf("longest request: %s, %v (provider timeout %v)", tm.path, tm.longest.Round(time.Millisecond), faultTimeout)
	if tm.longest < faultTimeout {
		t.Errorf("no request waited for the provider (%s took %v): the fault was not in force", tm.path, tm.longest)
	}
	if tm.longest > faultTimeout+holdSlack {
		t.Errorf("%s was held %v, over the provider timeout %v", tm.path, tm.longest, faultTimeout)
	}
}

// goroutineCheck records the number of goroutines and, once every cleanup registered after
// it has run (Caddy stopped, the provider's and the upstream's servers closed), checks that
// the number is back to it. Call it before building the harness.
func goroutineCheck(t *testing.T) (base int) {
	t.Helper()
	base = runtime.NumGoroutine()
	t.Cleanup(func() {
		// The goroutines of closed connections and stopped servers end on their own, shortly
		// after the close that tells them to: there is nothing to wait on but the count itself.
		// So this check, and only this one, polls, yielding between short waits, for at most
		// goroutineGrace.
		start := time.Now()
		deadline := start.Add(goroutineGrace)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				t.Logf("goroutines: %d at the start, %d after Caddy stopped and the servers closed (within %v)",
					base, n, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				var stacks bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Errorf("%d goroutines %v after Caddy stopped, %d at the start:\n%s", n, goroutineGrace, base, stacks.String())
				return
			}
			runtime.Gosched()
			time.Sleep(5 * time.Millisecond)
		}
	})
	return base
}

// goroutineGrace bounds the wait for goroutines to end after their connections closed. The
// slowest is Caddy's own: the first start in a process cleans the certificate storage under
// a lock whose keeper (certmagic's keepLockfileFresh) sees the release only at its next
// 5-second tick.
const goroutineGrace = 10 * time.Second

// peakGoroutines samples the number of goroutines until stop is called, and returns the
// highest seen. It only observes, for the report.
func peakGoroutines() (stop func() int) {
	var peak atomic.Int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int {
		close(quit)
		<-done
		return int(peak.Load())
	}
}

// fetch is a request for use off the test's goroutine: it reports instead of failing.
func fetch(c *http.Client, method, target, accept string) (status int, body string, err error) {
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestNoGoroutineLeftBehind(t *testing.T) {
	// A burst of logins (each its own browser) and API requests against a provider that fails
	// one way; fewer logins than callbackBurst, so no client is limited.
	const logins, apis = 16, 16
	for _, fault := range []devidp.Misbehaviour{
		devidp.DiscoverySlow, devidp.TokenEndpointSlow, devidp.JWKSSlow, devidp.UserinfoSlow,
		devidp.Discovery500, devidp.TokenEndpoint500, devidp.UserinfoTruncated,
	} {
		t.Run(string(fault), func(t *testing.T) {
			base := goroutineCheck(t)
			h := certHarness(t, nil, fault)
			transport := &http.Transport{}
			t.Cleanup(transport.CloseIdleConnections)
			stop := peakGoroutines()

			statuses := make(chan int, logins+apis)
			failures := make(chan error, logins+apis)
			var wg sync.WaitGroup
			for i := 0; i < logins+apis; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					jar, _ := cookiejar.New(nil)
					c := &http.Client{Jar: jar, Transport: transport, Timeout: 20 * time.Second}
					target, accept := h.siteURL+"/", "text/html"
					if i >= logins {
						target, accept = h.siteURL+"/api", "application/json"
					}
					status, _, err := fetch(c, http.MethodGet, target, accept)
					if err != nil {
						failures <- err
						return
					}
					statuses <- status
				}()
			}
			wg.Wait()
			close(statuses)
			close(failures)
			peak := stop()
			for err := range failures {
				t.Errorf("transport error: %v", err)
			}
			count := map[int]int{}
			for s := range statuses {
				count[s]++
			}
			if count[http.StatusBadGateway] != logins || count[http.StatusUnauthorized] != apis {
				t.Errorf("statuses %v, want %d × 502 and %d × 401", count, logins, apis)
			}
			if err := caddy.Stop(); err != nil {
				t.Fatal(err)
			}
			t.Logf("goroutines: %d at the start, at most %d during the burst, %d once Caddy stopped (servers still up)",
				base, peak, runtime.NumGoroutine())
		})
	}
}

func TestRefreshRefusedEndsCleanly(t *testing.T) {
	// endsCleanly checks that a refused refresh ends the session: 401 for the API request
	// that found it, the cookie cleared, the application not reached, a session_rejected
	// event; and that a new login works once the provider issues tokens again (heal).
	endsCleanly := func(t *testing.T, h *harness, id string, heal func()) {
		t.Helper()
		hits := h.upstream.count()
		h.clock.Advance(9*time.Minute + 30*time.Second) // due for renewal
		res := h.api(http.MethodGet, "/api")
		if res.status != http.StatusUnauthorized {
			t.Fatalf("an API request after the refused refresh: %d %.300s", res.status, res.body)
		}
		if h.upstream.count() != hits {
			t.Errorf("the application was reached")
		}
		for _, name := range h.cookieNames() {
			if name == h.handler.jar.Base {
				t.Errorf("the session cookie was not cleared")
			}
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": "refresh refused by the provider",
			"session_id": id, "subject": "auth0|alice"})
		h.impNoSession()

		heal()
		e := h.login("alice")
		if e.Headers.Get("X-Forwarded-User") != "auth0|alice" || !strings.HasPrefix(e.Headers.Get("Authorization"), "Bearer ") {
			t.Fatalf("the new login: %v", e.Headers)
		}
		if got := h.sessionID(); got == id {
			t.Errorf("the new login kept the ended session's id")
		}
	}

	t.Run("the token endpoint answering invalid_grant", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		h.login("alice")
		h.tokenStatus.Store(http.StatusBadRequest)
		id := h.sessionID()
		endsCleanly(t, h, id, func() { h.tokenStatus.Store(0) })
	})

	t.Run("the provider revoked the grant because its code was presented again", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		_, authorize := h.startAttempt()
		back := h.impNavigate(authorize)
		callback, err := url.Parse(back.header.Get("Location"))
		if back.status != http.StatusFound || err != nil || callback.Query().Get("code") == "" {
			t.Fatalf("the provider's answer: %d to %q", back.status, back.header.Get("Location"))
		}
		if e, ok := h.browse(callback.String()).echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("the login: %v", e.Headers)
		}
		id := h.sessionID()

		// Whoever holds the code presents it again: the provider refuses, and revokes what
		// the code gave, the refresh token with it (RFC 6749 §4.1.2).
		form := url.Values{"grant_type": {"authorization_code"}, "code": {callback.Query().Get("code")},
			"redirect_uri": {h.siteURL + "/oauth2/callback"}}
		req, _ := http.NewRequest(http.MethodPost, h.idpURL+"oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(testClientID, testClientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_grant") {
			t.Fatalf("the code presented again: %d %s", resp.StatusCode, body)
		}
		endsCleanly(t, h, id, func() {})
	})
}

// A userinfo endpoint that fails is the provider's trouble, as a token endpoint's or a key
// set's failure is: it must not spend the budget of failed sign-ins that a client has against
// forged codes, or an office behind one address would be refused 429 during an outage and
// after it.
func TestUserinfoOutageDoesNotSpendTheFailureBudget(t *testing.T) {
	for _, fault := range []devidp.Misbehaviour{devidp.Userinfo500, devidp.UserinfoHTML} {
		t.Run(string(fault), func(t *testing.T) {
			h := certHarness(t, nil, fault)
			for i := 0; i < callbackBurst+5; i++ {
				if res := h.impOtherBrowser().browse("/"); res.status != http.StatusBadGateway {
					t.Fatalf("login %d during the userinfo outage: %d, want 502", i+1, res.status)
				}
			}
			if err := h.idp.SetMisbehaviour(); err != nil {
				t.Fatal(err)
			}
			if e := h.impOtherBrowser().login("alice"); e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
				t.Fatalf("the first login once the provider is back: %v", e.Headers)
			}
		})
	}
}

// countedListener counts the connections open at a server.
type countedListener struct {
	net.Listener
	open atomic.Int32
}

func (l *countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countedListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// Once Caddy has stopped, the module holds no connection to the provider, which is still up:
// no connection's read and write loops are left behind. (The goroutine checks above run after
// the provider's server closed, which ends such connections from its side; this one does not.)
func TestCaddyStopLeavesNoConnectionToTheProvider(t *testing.T) {
	h := newHarness(t, nil, nil)
	addr := h.idpSrv.Listener.Addr().String()
	h.idpSrv.Close()
	counted := &countedListener{Listener: listenAt(t, addr)}
	serveProvider(t, h, counted)

	browser := &http.Transport{} // the browser's connections are its own, closed below
	h.client.Transport = browser
	h.login("alice")
	browser.CloseIdleConnections()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	// Connections close asynchronously; only this count tells when: poll it, briefly.
	deadline := time.Now().Add(5 * time.Second)
	for counted.open.Load() != 0 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
	if n := counted.open.Load(); n != 0 {
		t.Errorf("%d connections to the provider still open 5s after Caddy stopped", n)
	}
}
