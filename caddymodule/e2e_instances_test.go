package caddymodule

import (
	"bytes"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Two Caddy instances — this test process and a second Caddy process built from cmd/caddy —
// serving one site with the same secret and the same Redis.

var (
	caddyBinOnce sync.Once
	caddyBin     string
	caddyBinErr  error
)

// buildCaddy builds cmd/caddy once per test run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	caddyBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "oidc-auth-caddy-")
		if err != nil {
			caddyBinErr = err
			return
		}
		caddyBin = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyBin, "../cmd/caddy").CombinedOutput()
		if err != nil {
			caddyBinErr = &buildError{string(out)}
		}
	})
	if caddyBinErr != nil {
		t.Fatalf("building cmd/caddy: %v", caddyBinErr)
	}
	return caddyBin
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

// secondInstance runs another Caddy process with the harness's site, configured by cfg, on a
// port of its own, and returns its URL. Cookies are per host, not per port: the harness's
// browser carries the same session to both.
// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func (h *harness) secondInstance(cfg func(*Handler)) string {
	t := h.t
	bin := buildCaddy(t)
	port := freePort(t)
	hc := h.handlerConfig(cfg)
	path := filepath.Join(t.TempDir(), "caddy.json")
	conf := bytes.Replace(h.siteConfig(port, handlerJSON(t, "oidc_auth", &hc)), []byte(`"level":"ERROR"`), []byte(`"level":"WARN"`), 1)
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("the second Caddy's log:\n%s", lastLines(logs.String(), 40))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return "http://127.0.0.1:" + port
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Caddy did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// revokeSubject ends every session of sub through the admin API of this process.
func revokeSubject(t *testing.T, sub string) {
	t.Helper()
	core, _ := observer.New(zapcore.InfoLevel)
	if status, body := adminCall(t, &AdminAPI{audit: zap.New(core)}, http.MethodDelete, "/oidc_auth/sessions?sub="+url.QueryEscape(sub)); status != http.StatusOK {
		t.Fatalf("revoking %s: %d %s", sub, status, body)
	}
}

// refusedWithinASecond waits for the browser b's session to be refused at target, and returns
// how long that took: the revocation's propagation.
func refusedWithinASecond(t *testing.T, b *harness, target string) time.Duration {
	t.Helper()
	start := time.Now()
	for b.api(http.MethodGet, target).status != http.StatusUnauthorized {
		if time.Since(start) > time.Second {
			t.Fatalf("after %v %s still accepts the revoked session", time.Since(start), target)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestInstancesShareSessionsReplaysAndRevocations(t *testing.T) {
	addr, _ := startRedis(t)
	cfg := withRedis(addr, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}))
	h := newHarness(t, cfg, func(c *devidp.Config) {
		c.Clients[0].BackchannelLogoutURI = c.Clients[0].RedirectURIs[0][:strings.LastIndex(c.Clients[0].RedirectURIs[0], "/")+1] + "backchannel-logout"
	})
	other := h.secondInstance(cfg)

	t.Run("a login on one instance is a session on the other", func(t *testing.T) {
		h.login("alice")
		res := h.api(http.MethodGet, other+"/on-b")
		if e, ok := res.echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("the session at the other instance: %d %.200s", res.status, res.body)
		}
	})
	t.Run("tokens used on one instance are refused on the other", func(t *testing.T) {
		tokens := h.impFragment("bob", "admin")
		if e, ok := h.impOtherBrowser().postForm("/oauth2/callback", tokens).echo(); !ok || e.Headers.Get("X-Forwarded-Impersonated") != "true" {
			t.Fatal("the first use did not sign in")
		}
		res := h.impOtherBrowser().postForm(other+"/oauth2/callback", tokens)
		if res.status != http.StatusForbidden {
			t.Fatalf("the same tokens at the other instance: %d, want 403", res.status)
		}
	})
	t.Run("a revocation through the admin API on one reaches the other within a second", func(t *testing.T) {
		carol := h.impOtherBrowser()
		carol.idp.SetAutoLogin("carol", "")
		carol.login("carol")
		if carol.api(http.MethodGet, other+"/x").status != http.StatusOK {
			t.Fatal("carol's session at the other instance")
		}
		revokeSubject(t, "auth0|carol")
		t.Logf("the admin API's revocation reached the other instance in %v", refusedWithinASecond(t, carol, other+"/x"))
	})
	t.Run("a back-channel logout on one reaches the other within a second", func(t *testing.T) {
		if h.api(http.MethodGet, other+"/x").status != http.StatusOK {
			t.Fatal("alice's session at the other instance")
		}
		if h.idp.EndSession("auth0|alice") == 0 {
			t.Fatal("the provider ended no session")
		}
		t.Logf("the back-channel logout reached the other instance in %v", refusedWithinASecond(t, h, other+"/x"))
	})
}

// Both instances see the session's access token near its end at once: one refresh_token grant
// is spent, by whichever takes the shared lock first, and every request is served.
func TestInstancesRefreshOnce(t *testing.T) {
	addr, _ := startRedis(t)
	cfg := withRedis(addr, func(c *Handler) {
		c.Refresh = true
		c.Scopes = []string{"openid", "profile", "email", "offline_access"}
	})
	// The second process reads the real clock: a token living just over refreshMargin needs
	// renewing there a second after it is issued.
	h := newHarness(t, cfg, func(c *devidp.Config) { c.AccessTokenTTL = refreshMargin + time.Second })
	other := h.secondInstance(cfg)
	h.login("alice")
	time.Sleep(1500 * time.Millisecond)
	h.clock.Advance(time.Since(h.clock.Now()))
	if h.refreshGrants.Load() != 0 {
		t.Fatal("a refresh before the token neared its end")
	}

	h.slowRefresh.Store(int64(300 * time.Millisecond))
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for i := range 20 {
		site := h.siteURL
		if i%2 == 1 {
			site = other
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- h.api(http.MethodGet, site+"/refresh-race").status
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusOK {
			t.Errorf("a request during the refresh: %d", st)
		}
	}
	if n := h.refreshGrants.Load(); n != 1 {
		t.Errorf("%d refresh grants from two instances at once, want 1", n)
	}
}

// Redis, persisting as production Redis should, goes away and comes back: cookie sessions are
// served throughout, what needs the store fails closed meanwhile, and afterwards both
// instances use it again — single-use claims, the session index, and revocations announced by
// one reaching the other.
func TestInstancesSurviveARedisRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startRedisAt(t, freePort(t), dir)
	port := addr[strings.LastIndex(addr, ":")+1 : strings.LastIndex(addr, "/")]
	cfg := withRedis(addr, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}))
	h := newHarness(t, cfg, nil)
	other := h.secondInstance(cfg)
	at := func(site string) int { return h.api(http.MethodGet, site+"/x").status }
	h.login("alice")
	tokens := h.impFragment("bob", "admin")

	stop()
	if at(h.siteURL) != http.StatusOK || at(other) != http.StatusOK {
		t.Fatal("a cookie session while Redis is down")
	}
	if res := h.impOtherBrowser().postForm(other+"/oauth2/callback", tokens); res.status != http.StatusServiceUnavailable {
		t.Fatalf("an unsolicited response while Redis is down: %d, want 503", res.status)
	}

	startRedisAt(t, port, dir)
	start := time.Now()
	for {
		res := h.impOtherBrowser().postForm(other+"/oauth2/callback", tokens)
		if e, ok := res.echo(); ok && e.Headers.Get("X-Forwarded-Impersonated") == "true" {
			break
		}
		if res.status != http.StatusServiceUnavailable || time.Since(start) > 10*time.Second {
			t.Fatalf("the tokens refused while Redis was down, after it came back: %d %.200s", res.status, res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the other instance used Redis again %v after it came back", time.Since(start))
	if res := h.impOtherBrowser().postForm("/oauth2/callback", tokens); res.status != http.StatusForbidden {
		t.Fatalf("the same tokens at this instance after the restart: %d, want 403", res.status)
	}

	revokeSubject(t, "auth0|alice")
	t.Logf("a revocation after the restart reached the other instance in %v", refusedWithinASecond(t, h, other+"/x"))
}

// A confirmation page shown by one instance is continued at the other (behind one load
// balancer, the same Host and Origin) — once: someone holding a copy of the page's token and
// the browser's cookies from before cannot continue it again at the first.
func TestInstancesShareConfirmationsOnce(t *testing.T) {
	addr, _ := startRedis(t)
	cfg := withRedis(addr, withImpersonation(&ImpersonationConfig{}))
	h := newHarness(t, cfg, nil)
	other := h.secondInstance(cfg)
	site, _ := url.Parse(h.siteURL)
	token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
	copied := h.client.Jar.Cookies(site)

	form := url.Values{"token": {token}, "decision": {"continue"}}
	req, _ := http.NewRequest(http.MethodPost, other+"/oauth2/confirm", strings.NewReader(form.Encode()))
	req.Host = site.Host
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Origin", h.siteURL)
	if e, ok := h.do(req).echo(); !ok || e.Headers.Get("X-Forwarded-Impersonated") != "true" {
		t.Fatal("Continue at the other instance did not sign in")
	}
	thief := h.impOtherBrowser()
	thief.client.Jar.SetCookies(site, copied)
	res := thief.impDecide(token, "continue")
	if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Impersonation not confirmed") {
		t.Fatalf("the used confirmation at the first instance: %d %.300s", res.status, res.body)
	}
	if st := thief.api(http.MethodGet, "/x").status; st != http.StatusUnauthorized {
		t.Errorf("the copied browser has a session: %d", st)
	}
}
