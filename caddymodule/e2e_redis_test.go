package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// The Redis store, against a real redis-server (Debian's redis-server; the tests start their
// own on a free loopback port, and skip where it is missing outside CI).

// startRedis runs a redis-server until the test ends and returns its URL and a func that
// stops it (for outage tests).
func startRedis(t testing.TB) (string, func()) {
	t.Helper()
	return startRedisAt(t, freePort(t), "")
}

// startRedisAt starts redis-server on port: a Redis restarted on its old address. With a
// dir, it persists there every write (an append-only file synced at once), so a restart —
// even a kill — loses nothing.
func startRedisAt(t testing.TB, port, dir string) (string, func()) {
	t.Helper()
	args := []string{"--save", "", "--appendonly", "no"}
	if dir != "" {
		args = append(args, "--dir", dir, "--appendonly", "yes", "--appendfsync", "always")
	}
	return "redis://127.0.0.1:" + port + "/0", startRedisWith(t, port, args...)
}

// startRedisWith starts redis-server on port with further arguments, and returns what stops it.
func startRedisWith(t testing.TB, port string, args ...string) func() {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is missing in CI")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server to run the Redis tests")
	}
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("redis-server did not start")
	}
	return stop
}

func TestRedisStoreClaimsAndLocks(t *testing.T) {
	addr, _ := startRedis(t)
	rs := &RedisStore{URL: addr, Prefix: "test"}
	if err := rs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Cleanup() })
	a, _ := rs.openStore("https://idp/\x00app")
	b, _ := rs.openStore("https://idp/\x00app") // another instance of the same site
	other, _ := rs.openStore("https://idp/\x00another-client")
	ctx := context.Background()
	now := time.Now()
	if ok, err := a.Claim(ctx, "code\x00x", now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, err := b.Claim(ctx, "code\x00x", now.Add(time.Minute)); ok || err != nil {
		t.Fatalf("a claim made through one instance was new to another: %v %v", ok, err)
	}
	if ok, _ := other.Claim(ctx, "code\x00x", now.Add(time.Minute)); !ok {
		t.Error("another client's claims are not its own")
	}
	if ok, _ := a.Claim(ctx, "gone\x00y", now.Add(-time.Second)); !ok {
		t.Fatal("a claim expiring at once")
	}
	if ok, _ := b.Claim(ctx, "gone\x00y", now.Add(time.Minute)); !ok {
		t.Error("an expired claim was still remembered")
	}
	unlock, ok, err := a.TryLock(ctx, "refresh\x00s", time.Minute)
	if !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	if _, ok, _ := b.TryLock(ctx, "refresh\x00s", time.Minute); ok {
		t.Error("two instances held one lock")
	}
	unlock()
	if _, ok, _ := b.TryLock(ctx, "refresh\x00s", time.Minute); !ok {
		t.Error("an unlocked lock could not be taken")
	}
	if !a.Horizon().IsZero() {
		t.Error("Redis forgets nothing on a restart: its horizon is zero")
	}
}

func TestRedisStoreOption(t *testing.T) {
	t.Parallel()
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oidc_auth {\n store redis {\n url redis://:pw@127.0.0.1:6379/1\n prefix site1\n }\n}"))
	if err != nil || !strings.Contains(string(h.StoreRaw), `"backend":"redis"`) || !strings.Contains(string(h.StoreRaw), `"prefix":"site1"`) {
		t.Fatalf("StoreRaw %s, err %v", h.StoreRaw, err)
	}
	err = h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oidc_auth {\n store redis redis://127.0.0.1:6379\n}"))
	if err != nil || !strings.Contains(string(h.StoreRaw), `"url":"redis://127.0.0.1:6379"`) {
		t.Fatalf("StoreRaw %s, err %v", h.StoreRaw, err)
	}
	rs := &RedisStore{URL: "redis://:s3cret-pass@127.0.0.1:6379/?no_such_option=1"}
	if err := rs.Provision(caddy.Context{}); err == nil || strings.Contains(err.Error(), "s3cret-pass") {
		t.Errorf("a bad URL: %v (it must fail without showing the password)", err)
	}
}

// withRedis configures the Redis store on addr.
func withRedis(addr string, cfg func(*Handler)) func(*Handler) {
	return func(c *Handler) {
		c.StoreRaw = []byte(`{"backend":"redis","url":"` + addr + `"}`)
		if cfg != nil {
			cfg(c)
		}
	}
}

func TestRedisRemembersReplaysAcrossARestart(t *testing.T) {
	addr, _ := startRedis(t)
	cfg := withRedis(addr, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}))
	h := newHarness(t, cfg, nil)
	tokens := h.impFragment("alice", "admin")
	if e, ok := h.postForm("/oauth2/callback", tokens).echo(); !ok || e.Headers.Get("X-Forwarded-Impersonated") != "true" {
		t.Fatal("the first use of the tokens did not sign in")
	}
	// A restart: the in-memory store would begin again; Redis remembers.
	_ = caddy.Stop()
	h.clock.Advance(3 * time.Second)
	h.loadSite(cfg)
	h.client.CloseIdleConnections()
	res := h.impOtherBrowser().postForm("/oauth2/callback", tokens)
	if res.status != http.StatusForbidden {
		t.Fatalf("the same tokens after a restart: %d", res.status)
	}
	h.impAudit(evImpersonationDenied, map[string]string{"reason": "ID token replayed"})
}

func TestRedisDownFailsClosedAndCookieSessionsGoOn(t *testing.T) {
	addr, stop := startRedis(t)
	h := newHarness(t, withRedis(addr, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)})), nil)
	h.login("bob")
	tokens := h.impFragment("alice", "admin")
	stop()
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Errorf("a cookie session while Redis is down: %d", res.status)
	}
	res := h.impOtherBrowser().postForm("/oauth2/callback", tokens)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("an impersonation needing the store while Redis is down: %d, want 503", res.status)
	}
	h.impAudit(evImpersonationDenied, map[string]string{"reason": "store unavailable"})
	if n := metricValue(t, "caddy_oidc_auth_store_errors_total", map[string]string{"op": "claim"}); n < 1 {
		t.Errorf("store_errors_total{op=claim} = %v", n)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(addr, "redis://"), "/0"), time.Second); err == nil {
		t.Error("Redis still answers")
	}
}

// BenchmarkStores measures what a login or an unsolicited response pays for the store (a
// claim: one round trip to Redis), and what the authenticated path pays (the in-memory
// revocation set, whichever the store).
func BenchmarkStores(b *testing.B) {
	ctx := context.Background()
	url, _ := startRedis(b)
	rs := &RedisStore{URL: url, Prefix: "bench"}
	if err := rs.Provision(caddy.Context{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rs.Cleanup() })
	redisStore, _ := rs.openStore("bench")
	stores := map[string]store.Store{"memory": store.NewMemory(nil), "redis": redisStore}
	for name, s := range stores {
		b.Run(name+"/claim", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Claim(ctx, "code\x00"+strconv.Itoa(i), time.Now().Add(time.Millisecond)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/revoked", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Revoked("k3J9xQ2mN8pL5vR1tY7wZa")
			}
		})
	}
}

func TestRedisServerSideSessionsCarryLargeTokenSets(t *testing.T) {
	addr, _ := startRedis(t)
	bigAlice := func(c *devidp.Config) {
		users := devidp.DemoUsers()
		for i := range 700 {
			users[0].Groups = append(users[0].Groups, fmt.Sprintf("department-%04d-all-staff", i))
		}
		c.Users = users
	}
	t.Run("in a cookie, such a session does not fit", func(t *testing.T) {
		h := newHarness(t, nil, bigAlice)
		if res := h.browse("/"); res.status != http.StatusBadGateway {
			t.Fatalf("%d, want 502 session too large", res.status)
		}
	})
	cfg := withRedis(addr, func(c *Handler) { c.ServerSideSessions = true })
	h := newHarness(t, cfg, bigAlice)
	e := h.login("alice")
	if n := len(strings.Split(e.Headers.Get("X-Forwarded-Groups"), ",")); n != 701 {
		t.Fatalf("the application got %d groups", n)
	}
	site, _ := url.Parse(h.siteURL)
	var cookieBytes int
	for _, c := range h.client.Jar.Cookies(site) {
		cookieBytes += len(c.Name) + len(c.Value)
	}
	if cookieBytes > 400 {
		t.Errorf("the browser carries %d bytes of cookies for a 20 KB session", cookieBytes)
	}
	// Another instance (a restart: an empty local cache) reads the session from Redis.
	_ = caddy.Stop()
	h.loadSite(cfg)
	h.client.CloseIdleConnections()
	if e, ok := h.browse("/again").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatalf("the session on another instance: %v", e.Headers)
	}
	// Signing out removes it from Redis: a copy of the cookie is worth nothing.
	copied := h.client.Jar.Cookies(site)
	if resp := h.ownPost("/oauth2/logout"); resp.StatusCode != http.StatusFound {
		t.Fatalf("signing out: %d", resp.StatusCode)
	}
	h.client.Jar.SetCookies(site, copied)
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("a copied ticket after sign-out: %d", res.status)
	}
	h.impAudit(evSessionRejected, map[string]string{"reason": "server-side session gone"})
}

// startRedisCluster starts a Redis Cluster of three masters and returns its URL as the store
// reads it (the first node, then addr= for the others).
func startRedisCluster(t testing.TB) string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-cli is missing in CI")
		}
		t.Skip("redis-cli is not installed: apt-get install -y redis-server to run the Redis tests")
	}
	dir := t.TempDir()
	var nodes []string
	for range 3 {
		port := freePort(t)
		startRedisWith(t, port, "--cluster-enabled", "yes", "--dir", dir,
			"--cluster-config-file", "nodes-"+port+".conf", "--cluster-node-timeout", "2000")
		nodes = append(nodes, "127.0.0.1:"+port)
	}
	args := append([]string{"--cluster", "create"}, nodes...)
	if out, err := exec.Command(cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("creating the cluster: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		host, port, _ := net.SplitHostPort(n)
		for {
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster is not ready: %s", out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "redis://" + nodes[0] + "?addr=" + nodes[1] + "&addr=" + nodes[2]
}

// A bearer token is registered in the store at its first use, so that revoking its subject
// reaches it: while Redis is down a new token is refused (503, fail closed, tried again on the
// next request), and a token already in use goes on.
func TestRedisDownRefusesNewBearerTokensAndKeepsThoseInUse(t *testing.T) {
	addr, stop := startRedis(t)
	h := newHarness(t, withRedis(addr, func(c *Handler) { c.Bearer = &BearerConfig{Audience: testAPI} }), nil)
	inUse := h.mint(devidp.AccessTokenOptions{})
	if r := h.withBearer(inUse); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	stop()
	if r := h.withBearer(inUse); r.status != http.StatusOK {
		t.Errorf("a token in use while Redis is down: %d", r.status)
	}
	r := h.withBearer(h.mint(devidp.AccessTokenOptions{Subject: "auth0|bob"}))
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"store_unavailable"`) {
		t.Fatalf("a new token while Redis is down: %d %s, want 503 JSON", r.status, r.body)
	}
	if _, reached := r.echo(); reached {
		t.Error("the unregistered token reached the app")
	}
	if ev, _ := h.lastEvent(evSessionRejected); !strings.HasPrefix(fmt.Sprint(ev["reason"]), "bearer token: store unavailable") {
		t.Errorf("audit %v", ev)
	}
}
