package caddymodule

import (
	"hash/maphash"
	"sync"
	"time"
)

// expiringCache keeps values by key until a time of their own, bounded: sharded so that
// concurrent requests rarely meet on one lock, and a full shard forgets its expired entries,
// then any one. It holds what the authenticated path would otherwise recompute on every
// request: decisions, sessions read from the store, verified bearer tokens.
type expiringCache[V any] struct {
	seed        maphash.Seed
	maxPerShard int
	shards      [16]cacheShard[V]
}

type cacheShard[V any] struct {
	mu sync.Mutex
	m  map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v     V
	until time.Time
}

// newExpiringCache keeps at most 16 × maxPerShard values.
func newExpiringCache[V any](maxPerShard int) *expiringCache[V] {
	c := &expiringCache[V]{seed: maphash.MakeSeed(), maxPerShard: maxPerShard}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry[V])
	}
	return c
}

func (c *expiringCache[V]) shard(key string) *cacheShard[V] {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// get returns the value kept for key, unless it has expired by now.
func (c *expiringCache[V]) get(key string, now time.Time) (V, bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	sh.mu.Unlock()
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put keeps v for key until until.
func (c *expiringCache[V]) put(key string, v V, until, now time.Time) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.maxPerShard {
		for k, old := range sh.m {
			if !now.Before(old.until) {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < c.maxPerShard {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[key] = cacheEntry[V]{v: v, until: until}
}

func (c *expiringCache[V]) drop(key string) {
	sh := c.shard(key)
	sh.mu.Lock()
	delete(sh.m, key)
	sh.mu.Unlock()
}

// len is the number of values kept, expired ones included.
func (c *expiringCache[V]) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
