package caddymodule

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// Load: many people signing in at once and then using the site, through real Caddy, the
// module and the development provider. Nothing may fail, nobody may see anyone else's
// identity, the module's memory must stay bounded, and nothing may be left running.

// loadUsers are the provider's accounts for the load test: u000, u001, ...
func loadUsers(n int) []devidp.User {
	users := make([]devidp.User, n)
	for i := range users {
		key := fmt.Sprintf("u%03d", i)
		users[i] = devidp.User{Key: key, ID: "auth0|" + key, Email: key + "@example.com", EmailVerified: true, Name: "User " + key}
	}
	return users
}

// loadTally counts what the simulated browsers saw, from many goroutines.
type loadTally struct {
	requests, transportErrors, serverErrors, wrong atomic.Int64
	mu                                             sync.Mutex
	examples                                       []string // the first few failures, for the report
}

func (lt *loadTally) fail(counter *atomic.Int64, format string, args ...any) {
	counter.Add(1)
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.examples) < 10 {
		lt.examples = append(lt.examples, fmt.Sprintf(format, args...))
	}
}

// loadBrowser is one person: a cookie jar and connections of their own.
type loadBrowser struct {
	h      *harness
	user   devidp.User
	client *http.Client
	tally  *loadTally
}

// get is a request to the site or the provider; ok is false when it failed, which is counted.
func (b *loadBrowser) get(method, target, accept string, form url.Values) (res result, ok bool) {
	var body io.Reader = http.NoBody
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.tally.fail(&b.tally.transportErrors, "%s: %v", b.user.Key, err)
		return res, false
	}
	req.Header.Set("Accept", accept)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	b.tally.requests.Add(1)
	resp, err := b.client.Do(req)
	if err != nil {
		b.tally.fail(&b.tally.transportErrors, "%s %s %s: %v", b.user.Key, method, target, err)
		return res, false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.tally.fail(&b.tally.transportErrors, "%s %s %s: reading: %v", b.user.Key, method, target, err)
		return res, false
	}
	res = result{status: resp.StatusCode, header: resp.Header, body: string(data), url: resp.Request.URL}
	if res.status >= 500 {
		b.tally.fail(&b.tally.serverErrors, "%s %s %s: %d at %s: %.200s", b.user.Key, method, target, res.status, res.url, res.body)
		return res, false
	}
	return res, true
}

// signIn is a full login: the site sends the browser to the provider, the person picks
// their account on the provider's sign-in page, the provider sends them back with a code,
// and the site lets them in.
func (b *loadBrowser) signIn() bool {
	page, ok := b.get(http.MethodGet, b.h.siteURL+"/", "text/html", nil)
	if !ok {
		return false
	}
	action := impFormAction.FindStringSubmatch(page.body)
	var tx string
	for _, f := range impHiddenInput.FindAllStringSubmatch(page.body, -1) {
		if html.UnescapeString(f[1]) == "tx" {
			tx = html.UnescapeString(f[2])
		}
	}
	if page.status != http.StatusOK || action == nil || tx == "" {
		b.tally.fail(&b.tally.wrong, "%s: not the provider's sign-in page: %d at %s", b.user.Key, page.status, page.url)
		return false
	}
	target, err := page.url.Parse(html.UnescapeString(action[1]))
	if err != nil {
		b.tally.fail(&b.tally.wrong, "%s: sign-in form action %q: %v", b.user.Key, action[1], err)
		return false
	}
	landing, ok := b.get(http.MethodPost, target.String(), "text/html", url.Values{"tx": {tx}, "user": {b.user.Key}})
	if !ok {
		return false
	}
	return b.check(landing, "/")
}

// check wants the upstream's echo of path, seen as this browser's user.
func (b *loadBrowser) check(res result, path string) bool {
	e, isEcho := res.echo()
	switch {
	case res.status != http.StatusOK || !isEcho:
		b.tally.fail(&b.tally.wrong, "%s: %s: %d at %s: %.200s", b.user.Key, path, res.status, res.url, res.body)
	case e.Path != path:
		b.tally.fail(&b.tally.wrong, "%s: asked for %s, the upstream answered %s", b.user.Key, path, e.Path)
	case e.Headers.Get("X-Forwarded-User") != b.user.ID || e.Headers.Get("X-Forwarded-Email") != b.user.Email:
		b.tally.fail(&b.tally.wrong, "%s: %s reached the upstream as %q <%s>", b.user.Key, path,
			e.Headers.Get("X-Forwarded-User"), e.Headers.Get("X-Forwarded-Email"))
	default:
		return true
	}
	return false
}

// sessionID asks the module's userinfo endpoint for the browser's session, which must be its
// user's.
func (b *loadBrowser) sessionID() (string, bool) {
	res, ok := b.get(http.MethodGet, b.h.siteURL+"/oauth2/userinfo", "application/json", nil)
	if !ok {
		return "", false
	}
	var info struct {
		Sub       string `json:"sub"`
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(res.body), &info); err != nil || res.status != http.StatusOK ||
		info.Sub != b.user.ID || info.SessionID == "" {
		b.tally.fail(&b.tally.wrong, "%s: userinfo %d %.200s", b.user.Key, res.status, res.body)
		return "", false
	}
	return info.SessionID, true
}

// memoryStoreSize counts the entries of the in-process store: claims (replay memory and
// one-time tokens) and locks. The store exposes no size, so the test reads its shards.
func memoryStoreSize(t *testing.T, s store.Store) (claims, locks, perShardMax int) {
	t.Helper()
	ms, ok := s.(*store.Memory)
	if !ok {
		t.Fatalf("the store is a %T, not the memory store", s)
	}
	v := reflect.ValueOf(ms).Elem()
	count := func(field string) (total, largest int) {
		shards := v.FieldByName(field)
		if !shards.IsValid() || shards.Kind() != reflect.Array {
			t.Fatalf("store.Memory has no %s array: the test must follow its layout", field)
		}
		for i := 0; i < shards.Len(); i++ {
			entries := shards.Index(i).FieldByName("entries")
			if !entries.IsValid() || entries.Kind() != reflect.Map {
				t.Fatalf("store.Memory's %s have no entries map: the test must follow its layout", field)
			}
			total += entries.Len()
			largest = max(largest, entries.Len())
		}
		return total, largest
	}
	claims, claimMax := count("shards")
	locks, lockMax := count("locks")
	return claims, locks, max(claimMax, lockMax)
}

// limiterSize counts the clients a callback limiter remembers, and its largest shard.
func limiterSize(l *callbackLimiter) (clients, perShardMax int) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		clients += len(sh.buckets)
		perShardMax = max(perShardMax, len(sh.buckets))
		sh.mu.Unlock()
	}
	return clients, perShardMax
}

// maxStoreEntriesPerShard is internal/store's maxEntriesPerShard, which that package keeps
// to itself.
const maxStoreEntriesPerShard = 8192

func TestLoad200Users(t *testing.T) {
	if testing.Short() {
		t.Skip("the load test signs in 200 users and sends 10,000 requests")
	}
	const users, requestsPerUser = 200, 50
	base := goroutineCheck(t)
	accounts := loadUsers(users)
	h := newHarness(t, nil, func(c *devidp.Config) { c.Users = accounts })
	// SetAutoLogin signs every browser in as one account: each person picks their own on the
	// provider's sign-in page instead, so that a mixed-up identity shows.
	h.idp.SetAutoLogin("", "")

	tally := new(loadTally)
	var transports []*http.Transport
	browsers := make([]*loadBrowser, users)
	for i := range browsers {
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		transports = append(transports, tr)
		browsers[i] = &loadBrowser{h: h, user: accounts[i], tally: tally,
			client: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}}
	}
	t.Cleanup(func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	})

	stopSampling := peakGoroutines()
	start := time.Now()
	var signedIn atomic.Int64
	var sessions sync.Map // session id → user key
	var wg sync.WaitGroup
	for _, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !b.signIn() {
				return
			}
			signedIn.Add(1)
			for j := 0; j < requestsPerUser; j++ {
				path := fmt.Sprintf("/app/%s/%d", b.user.Key, j)
				if res, ok := b.get(http.MethodGet, h.siteURL+path, "application/json", nil); ok {
					b.check(res, path)
				}
			}
			if id, ok := b.sessionID(); ok {
				sessions.Store(id, b.user.Key)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	peak := stopSampling()

	t.Logf("%d users signed in, %d requests (provider's included) in %v; goroutines: %d before, at most %d under load",
		signedIn.Load(), tally.requests.Load(), took.Round(time.Millisecond), base, peak)
	if n := tally.transportErrors.Load(); n != 0 {
		t.Errorf("%d transport errors", n)
	}
	if n := tally.serverErrors.Load(); n != 0 {
		t.Errorf("%d answers with a 5xx status", n)
	}
	if n := tally.wrong.Load(); n != 0 {
		t.Errorf("%d answers not the application's, or for another identity", n)
	}
	for _, ex := range tally.examples {
		t.Log(ex)
	}
	if signedIn.Load() != users {
		t.Errorf("%d of %d users signed in", signedIn.Load(), users)
	}
	distinct := 0
	sessions.Range(func(any, any) bool { distinct++; return true })
	if distinct != users {
		t.Errorf("%d distinct session ids among %d users", distinct, users)
	}
	if got, want := h.upstream.count(), users*(1+requestsPerUser); got != want {
		t.Errorf("the upstream saw %d requests, want %d", got, want)
	}
	if n := h.audit.FilterMessage(evLogin).Len(); n != users {
		t.Errorf("%d login events, want %d", n, users)
	}
	for _, ev := range []string{evLoginFailed, evSessionRejected} {
		if n := h.audit.FilterMessage(ev).Len(); n != 0 {
			t.Errorf("%d %s events under load", n, ev)
		}
	}

	// The store remembers each login's attempt and nothing per request; no refresh lock is
	// left taken. The limiters remember no client: nothing failed.
	claims, locks, storeShardMax := memoryStoreSize(t, unwrapStore(h.handler.store))
	unsolicited, unsolicitedShardMax := limiterSize(h.handler.unsolicitedLimit)
	failures, failureShardMax := limiterSize(h.handler.failureLimit)
	t.Logf("store: %d claims, %d locks, largest shard %d (bound %d); limiters: %d and %d clients, largest shards %d and %d (bound %d)",
		claims, locks, storeShardMax, maxStoreEntriesPerShard, unsolicited, failures, unsolicitedShardMax, failureShardMax, maxLimitedClients)
	if claims > users || locks != 0 || storeShardMax > maxStoreEntriesPerShard {
		t.Errorf("the store holds %d claims and %d locks after %d logins and %d requests", claims, locks, users, users*requestsPerUser)
	}
	if unsolicited != 0 || failures != 0 || unsolicitedShardMax > maxLimitedClients || failureShardMax > maxLimitedClients {
		t.Errorf("the limiters remember %d and %d clients after a load without failures", unsolicited, failures)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("goroutines once Caddy stopped (provider and upstream still up): %d", runtime.NumGoroutine())
}
