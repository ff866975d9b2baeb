package caddymodule

import (
	"hash/maphash"
	"net"
	"net/http"
	"sync"
	"time"
)

// The callback's work that reaches the provider (a code exchange, a key-set fetch for an
// unknown signature, a userinfo call) can be triggered by anyone with a forged response. A
// per-client budget keeps one client from spending the site's quota at the provider: a burst
// of callbackBurst, refilled at one every callbackRefill.
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

// admitCallback spends a token of the request's client, or refuses with 429.
func (h *Handler) admitCallback(r *http.Request) error {
	if h.limiter.allow(limitKey(clientIP(r)), h.now()) {
		return nil
	}
	e := loginFailed(errTooManyAttempts, "too many callbacks from this client")
	e.retryAfter = int(callbackRefill.Seconds())
	return e
}
