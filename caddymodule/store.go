package caddymodule

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Store holds what several Caddy instances serving one site must share: the replay cache,
// one-time tokens, and the one-refresh-at-a-time rule. The default lives in process memory;
// a shared implementation (Redis, say) can replace it without touching the flows.
type Store interface {
	// Claim records key until expires and reports whether it was new. false means the key
	// was claimed before: a replayed code or token, or a one-time token used twice.
	Claim(ctx context.Context, key string, expires time.Time) (bool, error)
	// TryLock takes the lock called key for at most ttl. ok is false when another holder has it.
	TryLock(ctx context.Context, key string, ttl time.Duration) (unlock func(), ok bool, err error)
}

// memoryStore is the in-process Store: sharded maps with expiry, bounded in size.
type memoryStore struct {
	seed   maphash.Seed
	shards [32]memoryShard
	// Locks live apart from claims, so a full replay cache never blocks a refresh.
	locks [32]memoryShard
	now   func() time.Time
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]time.Time
}

// maxEntriesPerShard bounds memory: when a shard is full, expired entries are swept and, if it
// is still full, the claim is refused — failing closed rather than forgetting a replay.
const maxEntriesPerShard = 8192

func newMemoryStore() *memoryStore {
	s := &memoryStore{seed: maphash.MakeSeed(), now: time.Now}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]time.Time)
		s.locks[i].entries = make(map[string]time.Time)
	}
	return s
}

func (s *memoryStore) shard(key string) *memoryShard {
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

func (s *memoryStore) lockShard(key string) *memoryShard {
	return &s.locks[maphash.String(s.seed, key)%uint64(len(s.locks))]
}

func (s *memoryStore) Claim(_ context.Context, key string, expires time.Time) (bool, error) {
	return s.shard(key).take(key, expires, s.now())
}

func (s *memoryStore) TryLock(_ context.Context, key string, ttl time.Duration) (func(), bool, error) {
	now := s.now()
	sh := s.lockShard(key)
	ok, err := sh.take(key, now.Add(ttl), now)
	if !ok || err != nil {
		return nil, false, err
	}
	return func() { sh.release(key) }, true, nil
}

func (sh *memoryShard) take(key string, expires, now time.Time) (bool, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if exp, ok := sh.entries[key]; ok && now.Before(exp) {
		return false, nil
	}
	if len(sh.entries) >= maxEntriesPerShard {
		for k, exp := range sh.entries {
			if !now.Before(exp) {
				delete(sh.entries, k)
			}
		}
		if len(sh.entries) >= maxEntriesPerShard {
			return false, errStoreFull
		}
	}
	sh.entries[key] = expires
	return true, nil
}

func (sh *memoryShard) release(key string) {
	sh.mu.Lock()
	delete(sh.entries, key)
	sh.mu.Unlock()
}

type storeError string

func (e storeError) Error() string { return string(e) }

const errStoreFull = storeError("replay store is full")

// stores keeps one memory store per issuer and client across config reloads, so a reload
// does not forget which codes and tokens were already used.
var stores = caddy.NewUsagePool()

type pooledStore struct{ *memoryStore }

func (pooledStore) Destruct() error { return nil }

func loadStore(key string) (Store, error) {
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledStore{newMemoryStore()}, nil
	})
	if err != nil {
		return nil, err
	}
	ps, ok := v.(pooledStore)
	if !ok {
		return nil, storeError("store pool holds an unexpected value")
	}
	return ps.memoryStore, nil
}

func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}
