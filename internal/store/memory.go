// Package store holds what several Caddy instances serving one site must share: the replay
// cache, one-time tokens and the one-refresh-at-a-time rule, behind one interface. Memory is
// the in-process implementation.
package store

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// Store is what the flows need of shared state. An error means the store could not answer:
// callers fail closed (they never read an error as "new" or "free").
type Store interface {
	// Claim records key until expires and reports whether it was new. false means the key
	// was claimed before: a replayed code or token, or a one-time token used twice.
	Claim(ctx context.Context, key string, expires time.Time) (bool, error)
	// TryLock takes the lock called key for at most ttl. ok is false when another holder has it.
	TryLock(ctx context.Context, key string, ttl time.Duration) (unlock func(), ok bool, err error)
	// Horizon is when the store's memory begins: a claim made before it is not known to the
	// store (a process restarted, an in-memory store). The zero time means the store
	// remembers every claim for its full time (a shared, persistent store).
	Horizon() time.Time
	// Register records a session when it is issued, for listing and revocation.
	Register(ctx context.Context, rec SessionRecord) error
	// Sessions lists the live sessions f selects.
	Sessions(ctx context.Context, f Filter) ([]SessionRecord, error)
	// Revoke ends the sessions everywhere the store reaches, until they would have expired.
	Revoke(ctx context.Context, recs []SessionRecord) error
	// Revoked reports whether a session was revoked: from memory, without any I/O, so that
	// the authenticated path can ask on every request.
	Revoked(id string) bool
	// PutSession keeps a server-side session's (sealed) data until expires.
	PutSession(ctx context.Context, id string, data []byte, expires time.Time) error
	// GetSession returns a server-side session's data; nil, without error, when there is none.
	GetSession(ctx context.Context, id string) ([]byte, error)
	// DeleteSession forgets a server-side session.
	DeleteSession(ctx context.Context, id string) error
}

// Memory is the in-process Store: sharded maps with expiry, bounded in size.
type Memory struct {
	seed   maphash.Seed
	shards [32]memoryShard
	// Locks live apart from claims, so a full replay cache never blocks a refresh.
	locks [32]memoryShard
	now   func() time.Time
	// created is when the store began; nothing claimed before it is remembered.
	created time.Time
	// the session registry and its revocations (registry.go)
	reg registry
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]time.Time
}

// maxEntriesPerShard bounds memory: when a shard is full, expired entries are swept and, if it
// is still full, the claim is refused — failing closed rather than forgetting a replay.
const maxEntriesPerShard = 8192

// NewMemory returns an empty store on the given clock (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	s := &Memory{seed: maphash.MakeSeed(), now: now, created: now(), reg: newRegistry()}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]time.Time)
		s.locks[i].entries = make(map[string]time.Time)
	}
	return s
}

func (s *Memory) shard(key string) *memoryShard {
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

func (s *Memory) lockShard(key string) *memoryShard {
	return &s.locks[maphash.String(s.seed, key)%uint64(len(s.locks))]
}

// Horizon implements Store: the memory begins when the store was made.
func (s *Memory) Horizon() time.Time { return s.created }

// SetClock moves the store onto another clock, its memory beginning now on that clock; call
// it before the store is in use.
func (s *Memory) SetClock(now func() time.Time) {
	s.now = now
	s.created = now()
}

// Claim implements Store.
func (s *Memory) Claim(_ context.Context, key string, expires time.Time) (bool, error) {
	return s.shard(key).take(key, expires, s.now())
}

// TryLock implements Store.
func (s *Memory) TryLock(_ context.Context, key string, ttl time.Duration) (func(), bool, error) {
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
			return false, ErrFull
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

// ErrFull: the store holds as many live entries as it may.
var ErrFull = errors.New("replay store is full")
