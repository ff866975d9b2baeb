package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/relyingparty/caddy-oidc-auth/internal/assertion"
)

// The assertion's signing keys live in Caddy's storage, so that every instance sharing it
// signs with the same keys. Each process keeps one keyManager per storage, shared by its
// handlers and kept across config reloads; it reloads the set from storage in the background,
// and creates or rotates keys only under the storage's lock, so that instances starting or
// rotating together end with one key set.

const (
	assertionKeysPath = "oidc_auth/assertion/keys.json"
	assertionKeysLock = "oidc_auth_assertion_keys"
	// keyReloadEvery is how often each instance rereads the key set: a rotation elsewhere is
	// seen within this (the retired key stays published far longer).
	keyReloadEvery = 30 * time.Second
	// jwksFreshness is the oldest copy of the key set the JWKS endpoint serves: a key another
	// instance has started signing with is published here within this.
	jwksFreshness  = 2 * time.Second
	storageTimeout = 30 * time.Second
)

// keyStorage is what the key manager needs of certmagic.Storage (Caddy's storage).
type keyStorage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// keyManager holds one storage's key set.
type keyManager struct {
	storage keyStorage
	logger  *zap.Logger
	snap    atomic.Pointer[keySnapshot]
	clock   atomic.Pointer[func() time.Time] // nil: time.Now; tests move it
	busy    atomic.Bool                      // a refresh current asked for is running
	kicked  sync.WaitGroup                   // that refresh, for Destruct to wait for
	reload  sync.Mutex                       // one reload from storage at a time

	mu      sync.Mutex
	periods map[time.Duration]int // the key_rotation of each handler using it

	stop chan struct{}
	done chan struct{}
}

// keySnapshot is the key set as last read or written, and when.
type keySnapshot struct {
	set    *assertion.Set
	loaded time.Time // wall clock with its monotonic reading, for freshness
	due    time.Time // on the manager's clock: when a rotation or a retirement is due
}

func newKeyManager(storage keyStorage, logger *zap.Logger) *keyManager {
	return &keyManager{storage: storage, logger: logger, periods: map[time.Duration]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

func (m *keyManager) now() time.Time {
	if f := m.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// setClock makes the manager read time from now (tests).
func (m *keyManager) setClock(now func() time.Time) { m.clock.Store(&now) }

// rotationPeriod is the shortest key_rotation of the handlers using the manager.
func (m *keyManager) rotationPeriod() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := defaultKeyRotation
	for d := range m.periods {
		if d < p {
			p = d
		}
	}
	return p
}

func (m *keyManager) addPeriod(d time.Duration, delta int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.periods[d] += delta; m.periods[d] <= 0 {
		delete(m.periods, d)
	}
}

// start reads (or creates) the key set, then keeps it fresh in the background until Destruct.
func (m *keyManager) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	if err := m.refresh(ctx, m.now(), false); err != nil {
		return err
	}
	go m.loop()
	return nil
}

func (m *keyManager) loop() {
	defer close(m.done)
	t := time.NewTicker(keyReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.refreshLogged()
		}
	}
}

func (m *keyManager) refreshLogged() {
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	if err := m.refresh(ctx, m.now(), false); err != nil {
		m.logger.Warn("refreshing the assertion signing keys", zap.Error(err))
	}
}

// Destruct stops the background refresh (caddy.Destructor: the last handler using the
// manager is gone).
func (m *keyManager) Destruct() error {
	close(m.stop)
	<-m.done
	m.kicked.Wait()
	return nil
}

// current is the key to sign with at now. When a rotation or retirement is due it has the
// background bring the set up to date; this request signs with the key it has.
func (m *keyManager) current(now time.Time) *assertion.Key {
	s := m.snap.Load()
	if !now.Before(s.due) && m.busy.CompareAndSwap(false, true) {
		m.kicked.Go(func() {
			defer m.busy.Store(false)
			m.refreshLogged()
		})
	}
	return s.set.Current(now)
}

// jwks is the JWKS document of the published keys, from a copy at most jwksFreshness old.
func (m *keyManager) jwks(ctx context.Context) ([]byte, error) {
	// One reload at a time, and none while a refresh holds the lock: the copy in hand is
	// served meanwhile. A failed reload counts as one, so a failing storage is read at most
	// once per jwksFreshness, however many requests come.
	if time.Since(m.snap.Load().loaded) > jwksFreshness && m.reload.TryLock() {
		if s := m.snap.Load(); time.Since(s.loaded) > jwksFreshness {
			if set, err := m.load(ctx); err != nil || set == nil {
				if err != nil {
					// The copy in hand is still right but for a rotation elsewhere: serve it.
					m.logger.Warn("reloading the assertion signing keys", zap.Error(err))
				}
				m.publish(s.set)
			} else {
				m.publish(set)
			}
		}
		m.reload.Unlock()
	}
	return m.snap.Load().set.JWKS(m.now())
}

// load reads the stored set; nil when there is none yet.
func (m *keyManager) load(ctx context.Context) (*assertion.Set, error) {
	b, err := m.storage.Load(ctx, assertionKeysPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s from storage: %w", assertionKeysPath, err)
	}
	set, err := assertion.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("the stored %s: %w", assertionKeysPath, err)
	}
	return set, nil
}

func (m *keyManager) publish(set *assertion.Set) {
	m.snap.Store(&keySnapshot{set: set, loaded: time.Now(), due: set.NextChange(m.now(), m.rotationPeriod())})
}

// refresh rereads the set and, when it has none, its key is due for rotation, a retired key
// is past its retention, or rotate is set, changes it under the storage's lock.
func (m *keyManager) refresh(ctx context.Context, now time.Time, rotate bool) error {
	m.reload.Lock()
	defer m.reload.Unlock()
	every := m.rotationPeriod()
	set, err := m.load(ctx)
	if err != nil {
		return err
	}
	if set != nil && !rotate && !set.RotationDue(now, every) {
		if _, prunable := set.Prune(now); !prunable {
			m.publish(set)
			return nil
		}
	}
	if err := m.storage.Lock(ctx, assertionKeysLock); err != nil {
		return fmt.Errorf("locking the assertion keys in storage: %w", err)
	}
	defer func() {
		if err := m.storage.Unlock(context.WithoutCancel(ctx), assertionKeysLock); err != nil {
			m.logger.Warn("unlocking the assertion keys in storage", zap.Error(err))
		}
	}()
	// Another instance may have changed the set while this one waited for the lock.
	if set, err = m.load(ctx); err != nil {
		return err
	}
	changed := false
	switch {
	case set == nil:
		if set, err = assertion.NewSet(now); err != nil {
			return err
		}
		changed = true
	case rotate || set.RotationDue(now, every):
		if set, err = set.Rotate(now); err != nil {
			return err
		}
		changed = true
	}
	if pruned, ok := set.Prune(now); ok {
		set, changed = pruned, true
	}
	if changed {
		b, err := set.Marshal()
		if err != nil {
			return err
		}
		if err := m.storage.Store(ctx, assertionKeysPath, b); err != nil {
			return fmt.Errorf("storing %s: %w", assertionKeysPath, err)
		}
		m.logger.Info("assertion signing keys changed", zap.String("newest_kid", set.Newest().ID), zap.String("signing_kid", set.Current(now).ID),
			zap.Int("published", len(set.Published(now))))
	}
	m.publish(set)
	return nil
}

// assertionKeys keeps one key manager per storage across config reloads.
var assertionKeys = caddy.NewUsagePool()

// acquireKeyManager returns the key manager of ctx's storage, and its key in the pool, for a
// handler rotating keys every period.
func acquireKeyManager(ctx caddy.Context, period time.Duration) (*keyManager, string, error) {
	storage := ctx.Storage()
	if storage == nil {
		return nil, "", errors.New("no storage configured")
	}
	// A storage names where it keeps data (FileStorage: its path): instances of one config
	// and of the next share a manager. One that does not gets a manager of its own.
	key := fmt.Sprintf("%T %p", storage, storage)
	if s, ok := storage.(fmt.Stringer); ok {
		key = fmt.Sprintf("%T %s", storage, s.String())
	}
	v, loaded, err := assertionKeys.LoadOrNew(key, func() (caddy.Destructor, error) {
		m := newKeyManager(storage, ctx.Logger().Named("assertion"))
		m.addPeriod(period, 1)
		if err := m.start(); err != nil {
			return nil, err
		}
		return m, nil
	})
	if err != nil {
		return nil, "", err
	}
	m, ok := v.(*keyManager)
	if !ok {
		_, _ = assertionKeys.Delete(key)
		return nil, "", errors.New("the assertion key pool holds an unexpected value")
	}
	if loaded {
		m.addPeriod(period, 1)
		m.publish(m.snap.Load().set) // its rotation may now be due sooner
	}
	return m, key, nil
}

// rotateAllAssertionKeys rotates the keys of every storage this process signs with, and
// returns the new keys: published now, signing from their Active time.
func rotateAllAssertionKeys(ctx context.Context) ([]*assertion.Key, error) {
	var keys []*assertion.Key
	var err error
	assertionKeys.Range(func(_, v any) bool {
		m, ok := v.(*keyManager)
		if !ok {
			return true
		}
		if err = m.refresh(ctx, m.now(), true); err != nil {
			return false
		}
		keys = append(keys, m.snap.Load().set.Newest())
		return true
	})
	return keys, err
}
