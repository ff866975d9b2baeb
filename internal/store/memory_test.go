package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// unitNow is the fixed clock of the unit tests.
var unitNow = time.Unix(1893456000, 0)

// clockedStore is a memory store whose clock the test moves.
func clockedStore() (*Memory, *time.Time) {
	s := NewMemory(nil)
	now := unitNow
	s.now = func() time.Time { return now }
	return s, &now
}

func TestClaimRemembersAKeyUntilItExpires(t *testing.T) {
	ctx := context.Background()
	s, now := clockedStore()
	expires := unitNow.Add(time.Minute)
	for _, step := range []struct {
		name    string
		at      time.Time
		key     string
		expires time.Time
		want    bool
	}{
		{"a new key is claimed", unitNow, "code\x00abc", expires, true},
		{"the same key again is refused", unitNow, "code\x00abc", expires, false},
		{"the same key with a later expiry is still refused", unitNow.Add(time.Second), "code\x00abc", expires.Add(time.Hour), false},
		{"another key is claimed", unitNow, "code\x00abd", expires, true},
		{"the key is refused until just before its expiry", expires.Add(-time.Nanosecond), "code\x00abc", expires, false},
		{"the key can be claimed again at its expiry", expires, "code\x00abc", expires.Add(time.Minute), true},
		{"and the new claim is remembered", expires, "code\x00abc", expires.Add(time.Minute), false},
	} {
		t.Run(step.name, func(t *testing.T) {
			*now = step.at
			ok, err := s.Claim(ctx, step.key, step.expires)
			if ok != step.want || err != nil {
				t.Fatalf("Claim(%q) at %v = (%v, %v), want (%v, nil)", step.key, step.at, ok, err, step.want)
			}
		})
	}
}

func TestTryLockIsExclusiveUntilUnlockedOrExpired(t *testing.T) {
	ctx := context.Background()
	s, now := clockedStore()

	unlock, ok, err := s.TryLock(ctx, "refresh\x00sid", 30*time.Second)
	if !ok || err != nil || unlock == nil {
		t.Fatalf("first TryLock = (%v, %v, %v), want the lock", unlock != nil, ok, err)
	}
	t.Run("a second holder is refused while the lock is held", func(t *testing.T) {
		u, ok, err := s.TryLock(ctx, "refresh\x00sid", 30*time.Second)
		if ok || err != nil || u != nil {
			t.Fatalf("TryLock = (%v, %v, %v), want (nil, false, nil)", u != nil, ok, err)
		}
	})
	t.Run("another key is locked independently", func(t *testing.T) {
		u, ok, err := s.TryLock(ctx, "refresh\x00other", 30*time.Second)
		if !ok || err != nil {
			t.Fatalf("TryLock of another key = (%v, %v)", ok, err)
		}
		u()
	})
	t.Run("a lock and a claim of the same name do not collide", func(t *testing.T) {
		if ok, err := s.Claim(ctx, "refresh\x00sid", unitNow.Add(time.Minute)); !ok || err != nil {
			t.Fatalf("Claim = (%v, %v), want (true, nil)", ok, err)
		}
	})
	t.Run("after unlock the lock can be taken again", func(t *testing.T) {
		unlock()
		u, ok, err := s.TryLock(ctx, "refresh\x00sid", 30*time.Second)
		if !ok || err != nil {
			t.Fatalf("TryLock after unlock = (%v, %v), want the lock", ok, err)
		}
		unlock = u
	})
	t.Run("a lock never unlocked frees itself after its ttl", func(t *testing.T) {
		*now = unitNow.Add(29 * time.Second)
		if _, ok, _ := s.TryLock(ctx, "refresh\x00sid", 30*time.Second); ok {
			t.Fatalf("the lock was taken before its ttl ran out")
		}
		*now = unitNow.Add(30 * time.Second)
		if _, ok, err := s.TryLock(ctx, "refresh\x00sid", 30*time.Second); !ok || err != nil {
			t.Fatalf("TryLock after the ttl = (%v, %v), want the lock", ok, err)
		}
	})
}

func TestTryLockAdmitsExactlyOneOfManyConcurrentHolders(t *testing.T) {
	s := NewMemory(nil)
	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, ok, err := s.TryLock(context.Background(), "refresh\x00shared", time.Minute); ok && err == nil {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d of %d concurrent TryLock calls got the lock, want exactly 1", winners, n)
	}
}

// keyInShard finds a key that the store puts in shard sh.
func keyInShard(t *testing.T, s *Memory, sh *memoryShard, prefix string) string {
	t.Helper()
	for i := 0; i < 100000; i++ {
		k := prefix + strconv.Itoa(i)
		if s.shard(k) == sh {
			return k
		}
	}
	t.Fatalf("no key of %d tries lands in the shard", 100000)
	return ""
}

func TestAFullShardFailsClosed(t *testing.T) {
	ctx := context.Background()
	s, now := clockedStore()
	sh := s.shard("probe")
	shortLived, longLived := unitNow.Add(time.Minute), unitNow.Add(time.Hour)
	// A long-lived key the store itself would put in this shard, to replay.
	known := keyInShard(t, s, sh, "code\x00known-")
	// Fill the shard directly: half the entries expire in a minute, half in an hour.
	sh.mu.Lock()
	sh.entries[known] = longLived
	alive := 1 // entries that outlive shortLived
	for i := 1; i < maxEntriesPerShard; i++ {
		exp := longLived
		if i%2 == 0 {
			exp = shortLived
		} else {
			alive++
		}
		sh.entries["filler\x00"+strconv.Itoa(i)] = exp
	}
	sh.mu.Unlock()

	t.Run("a new key in a full shard is refused with an error", func(t *testing.T) {
		ok, err := s.Claim(ctx, "probe", longLived)
		if ok || err != ErrFull {
			t.Fatalf("Claim = (%v, %v), want (false, %v)", ok, err, ErrFull)
		}
		if len(sh.entries) != maxEntriesPerShard {
			t.Errorf("the full shard holds %d entries, want %d: nothing may be forgotten", len(sh.entries), maxEntriesPerShard)
		}
	})
	t.Run("a replay of a remembered key is still told as a replay", func(t *testing.T) {
		if ok, err := s.Claim(ctx, known, longLived); ok || err != nil {
			t.Fatalf("Claim of a remembered key = (%v, %v), want (false, nil)", ok, err)
		}
	})
	t.Run("another shard is not affected", func(t *testing.T) {
		for i := 0; ; i++ {
			k := "elsewhere" + strconv.Itoa(i)
			if s.shard(k) != sh {
				if ok, err := s.Claim(ctx, k, longLived); !ok || err != nil {
					t.Fatalf("Claim in another shard = (%v, %v), want (true, nil)", ok, err)
				}
				return
			}
		}
	})
	t.Run("once entries expire they are swept and the claim succeeds", func(t *testing.T) {
		*now = shortLived
		ok, err := s.Claim(ctx, "probe", longLived)
		if !ok || err != nil {
			t.Fatalf("Claim after expiry = (%v, %v), want (true, nil)", ok, err)
		}
		if want := alive + 1; len(sh.entries) != want {
			t.Errorf("the shard holds %d entries after the sweep, want %d", len(sh.entries), want)
		}
		if ok, _ := s.Claim(ctx, known, longLived); ok {
			t.Errorf("the sweep forgot an entry that had not expired")
		}
	})
}

func TestAFullReplayCacheDoesNotBlockRefreshLocks(t *testing.T) {
	s := NewMemory(nil)
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	for i := range s.shards {
		for j := 0; j < maxEntriesPerShard; j++ {
			s.shards[i].entries[fmt.Sprintf("filler-%d-%d", i, j)] = now.Add(time.Hour)
		}
	}
	if ok, err := s.Claim(context.Background(), "one-more", now.Add(time.Hour)); ok || err == nil {
		t.Fatalf("a full cache took another claim: %v %v", ok, err)
	}
	unlock, ok, err := s.TryLock(context.Background(), "refresh\x00session", time.Minute)
	if !ok || err != nil {
		t.Fatalf("a full replay cache blocked a refresh lock: %v %v", ok, err)
	}
	unlock()
}

func TestTheMemoryStoresHorizonIsWhenItBeganOnItsClock(t *testing.T) {
	t.Parallel()
	began := time.Unix(1_900_000_000, 0)
	s := NewMemory(func() time.Time { return began })
	if !s.Horizon().Equal(began) {
		t.Fatalf("Horizon %v, want %v", s.Horizon(), began)
	}
	s.SetClock(func() time.Time { return began.Add(time.Hour) })
	if !s.Horizon().Equal(began.Add(time.Hour)) {
		t.Errorf("on a new clock the horizon is %v, want that clock's now", s.Horizon())
	}
}
