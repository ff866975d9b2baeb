package caddymodule

import (
	"hash/maphash"
	"net"
	"net/http"
	"sync"
	"time"
)

// The callback's work that reaches the provider (a code exchange, a key-set fetch for an
// unknown signature, a userinfo call) can be triggered by anyone with a forged response. Two
// per-client budgets keep one client from spending the site's quota at the provider, each a
// burst of callbackBurst refilled at one every callbackRefill: one spent by every unsolicited
// response, one spent only by a browser's own logins that fail at the provider.
const (
	callbackBurst  = 20
	callbackRefill = 3 * time.Second
	// maxLimitedClients bounds the memory of each of the limiter's shards.
	maxLimitedClients = 4096
)

type callbackLimiter struct {
	seed   maphash.Seed
	shards [16]limiterShard
}

type limiterShard struct {
	mu        sync.Mutex
	buckets   map[string]bucket
	lastSweep time.Time // sweeps run at most once a second, so a flood of strangers stays cheap
}

// bucket is a token bucket: tokens left as of when.
type bucket struct {
	tokens float64
	when   time.Time
}

func newCallbackLimiter() *callbackLimiter {
	l := &callbackLimiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]bucket)
	}
	return l
}

// ready reports whether the client has a token to spend, spending none.
func (l *callbackLimiter) ready(client string, now time.Time) bool {
	sh := &l.shards[maphash.String(l.seed, client)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[client]
	return !ok || b.tokens+float64(now.Sub(b.when))/float64(callbackRefill) >= 1
}

// allow spends one token of the client's budget, reporting false when it is spent.
func (l *callbackLimiter) allow(client string, now time.Time) bool {
	sh := &l.shards[maphash.String(l.seed, client)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[client]
	if !ok {
		if len(sh.buckets) >= maxLimitedClients && now.Sub(sh.lastSweep) >= time.Second {
			sh.lastSweep = now
			sh.sweep(now)
		}
		b = bucket{tokens: callbackBurst, when: now}
	}
	b.tokens = min(callbackBurst, b.tokens+float64(now.Sub(b.when))/float64(callbackRefill))
	b.when = now
	if b.tokens < 1 {
		sh.buckets[client] = b
		return false
	}
	b.tokens--
	// A shard still full of active clients after a sweep does not remember a new one: the
	// limit then fails open for it rather than refuse a stranger's login.
	if len(sh.buckets) < maxLimitedClients || ok {
		sh.buckets[client] = b
	}
	return true
}

// sweep forgets clients whose budget has refilled: they are as new ones.
func (sh *limiterShard) sweep(now time.Time) {
	for k, b := range sh.buckets {
		if b.tokens+float64(now.Sub(b.when))/float64(callbackRefill) >= callbackBurst {
			delete(sh.buckets, k)
		}
	}
}

// limitKey is the client an address stands for: the address, or its /64 for IPv6, where one
// client holds a whole prefix.
func limitKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// admitUnsolicited spends a token of the client's budget for responses that answer no login
// of this browser, or refuses with 429. Those are what a forged or planted callback is, so
// they never spend the budget of a browser completing its own login.
func (h *Handler) admitUnsolicited(r *http.Request) error {
	if h.unsolicitedLimit.allow(limitKey(clientIP(r)), h.now()) {
		return nil
	}
	return tooManyCallbacks("too many unsolicited callbacks from this client")
}

// admitSolicited refuses with 429 a browser's own login when its client's recent logins
// failed at the provider too often (forged codes with attempts of its own). It spends
// nothing: only a failure does (chargeFailure), so a busy office signing in is never refused.
func (h *Handler) admitSolicited(r *http.Request) error {
	if h.failureLimit.ready(limitKey(clientIP(r)), h.now()) {
		return nil
	}
	return tooManyCallbacks("too many failed sign-ins from this client")
}

// chargeFailure spends a token of the client's failure budget.
func (h *Handler) chargeFailure(r *http.Request) {
	h.failureLimit.allow(limitKey(clientIP(r)), h.now())
}

func tooManyCallbacks(reason string) *refusal {
	e := loginFailed(errTooManyAttempts, reason)
	e.retryAfter = int(callbackRefill.Seconds())
	return e
}
