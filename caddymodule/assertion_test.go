package caddymodule

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/relyingparty/caddy-oidc-auth/internal/assertion"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// memStorage is an in-memory keyStorage; its lock excludes like a storage's.
type memStorage struct {
	mu        sync.Mutex
	data      map[string][]byte
	locks     map[string]chan struct{}
	loads     atomic.Int32
	failLoads atomic.Bool // Load fails, as a storage that is down
}

func newMemStorage() *memStorage {
	return &memStorage{data: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

func (s *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.loads.Add(1)
	if s.failLoads.Load() {
		return nil, errors.New("storage unavailable")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.data[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}

func (s *memStorage) Store(_ context.Context, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = v
	return nil
}

func (s *memStorage) Lock(ctx context.Context, name string) error {
	for {
		s.mu.Lock()
		held, ok := s.locks[name]
		if !ok {
			s.locks[name] = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *memStorage) Unlock(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.locks[name])
	delete(s.locks, name)
	return nil
}

// startedManager is a key manager on storage, started, on the clock now.
func startedManager(tb testing.TB, storage keyStorage, now func() time.Time) *keyManager {
	tb.Helper()
	m := newKeyManager(storage, zap.NewNop())
	m.setClock(now)
	m.addPeriod(defaultKeyRotation, 1)
	if err := m.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Destruct() })
	return m
}

func TestInstancesStartingTogetherEndWithOneKey(t *testing.T) {
	t.Parallel()
	storage := newMemStorage()
	clock := func() time.Time { return unitNow }
	var wg sync.WaitGroup
	managers := make([]*keyManager, 8)
	for i := range managers {
		wg.Go(func() { managers[i] = startedManager(t, storage, clock) })
	}
	wg.Wait()
	kid := managers[0].current(unitNow).ID
	for i, m := range managers {
		if got := m.current(unitNow).ID; got != kid {
			t.Fatalf("instance %d signs with %s, instance 0 with %s", i, got, kid)
		}
	}

	t.Run("a rotation by one is seen by the others at their next reload", func(t *testing.T) {
		if err := managers[0].refresh(context.Background(), unitNow, true); err != nil {
			t.Fatal(err)
		}
		if got := managers[0].current(unitNow).ID; got != kid {
			t.Fatalf("the new key signs at once (%s), before it was published for %v", got, assertion.PublishAhead)
		}
		switchAt := unitNow.Add(assertion.PublishAhead)
		newKid := managers[0].current(switchAt).ID
		if newKid == kid {
			t.Fatal("the rotation kept the key")
		}
		managers[1].refreshLogged()
		if got := managers[1].current(switchAt).ID; got != newKid {
			t.Fatalf("after reloading, another instance signs with %s, want %s", got, newKid)
		}
	})
	t.Run("a corrupt stored set is an error, and the key in hand keeps signing", func(t *testing.T) {
		_ = storage.Store(context.Background(), assertionKeysPath, []byte("{not json"))
		before := managers[2].current(unitNow)
		if err := managers[2].refresh(context.Background(), unitNow, false); err == nil {
			t.Fatal("a corrupt stored key set loaded")
		}
		if managers[2].current(unitNow) != before {
			t.Fatal("a failed reload changed the signing key")
		}
		if _, err := managers[2].jwks(context.Background()); err != nil {
			t.Fatalf("the JWKS failed with the stored set corrupt: %v", err)
		}
	})
}

func TestClaimsOfASession(t *testing.T) {
	t.Parallel()
	s := &session.Session{ID: "sid1", Subject: "auth0|alice", Email: "alice@example.com", Name: "Alice",
		PreferredUsername: "alice", Groups: []string{"staff"}, Expires: unitNow.Add(time.Minute)}
	c := claimsOf(s, "https://app.example.com", "billing", unitNow, 5*time.Minute)
	if c.Email != "" || c.EmailVerified {
		t.Error("an unverified email is in the assertion")
	}
	if c.Expiry != unitNow.Add(time.Minute).Unix() {
		t.Errorf("exp %d outlives the session ending at %d", c.Expiry, unitNow.Add(time.Minute).Unix())
	}
	if c.Actor != nil || c.SessionID != "sid1" || c.Audience != "billing" || c.NotBefore != c.IssuedAt {
		t.Errorf("claims %+v", c)
	}
	s.EmailVerified, s.Impersonated, s.ImpersonatorID, s.ImpersonatorEmail = true, true, "auth0|admin", "admin@example.com"
	c = claimsOf(s, "i", "a", unitNow, 5*time.Minute)
	if c.Email != "alice@example.com" || !c.EmailVerified || c.Actor == nil || c.Actor.Subject != "auth0|admin" || c.Actor.Email != "" {
		t.Errorf("claims %+v, act %+v: want the verified email, and act without the unvouched email", c, c.Actor)
	}
	s.ImpersonatorEmailVerified = true
	if c = claimsOf(s, "i", "a", unitNow, 5*time.Minute); c.Actor.Email != "admin@example.com" {
		t.Errorf("act.email %q, want the vouched email", c.Actor.Email)
	}
}

func TestAssertionConfiguration(t *testing.T) {
	t.Parallel()
	valid := AssertionConfig{Header: defaultAssertionHeader, Audience: "billing",
		Lifetime: caddy.Duration(defaultAssertionLifetime), KeyRotation: caddy.Duration(defaultKeyRotation)}
	if err := valid.validate(); err != nil {
		t.Fatalf("the defaults with an audience: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		change     func(*AssertionConfig)
	}{
		{"no audience", "audience is required", func(c *AssertionConfig) { c.Audience = "" }},
		{"a lifetime over an hour", "lifetime", func(c *AssertionConfig) { c.Lifetime = caddy.Duration(2 * time.Hour) }},
		{"a lifetime of a second", "lifetime", func(c *AssertionConfig) { c.Lifetime = caddy.Duration(time.Second) }},
		{"a key rotation under an hour", "key_rotation", func(c *AssertionConfig) { c.KeyRotation = caddy.Duration(time.Minute) }},
		{"the Cookie header", "reserved", func(c *AssertionConfig) { c.Header = "cookie" }},
		{"a header name with a space", "not a header name", func(c *AssertionConfig) { c.Header = "X Assertion" }},
		{"a relative issuer", "issuer", func(c *AssertionConfig) { c.Issuer = "/me" }},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			c := valid
			tc.change(&c)
			if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one about %s", err, tc.want)
			}
		})
	}

	t.Run("the Caddyfile block sets every option", func(t *testing.T) {
		d := caddyfile.NewTestDispenser(`oidc_auth {
			assertion {
				header X-App-Identity
				audience billing
				issuer https://app.example.com
				lifetime 2m
				key_rotation 168h
			}
		}`)
		var h Handler
		if err := h.UnmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
		want := AssertionConfig{Header: "X-App-Identity", Audience: "billing", Issuer: "https://app.example.com",
			Lifetime: caddy.Duration(2 * time.Minute), KeyRotation: caddy.Duration(168 * time.Hour)}
		if h.Assertion == nil || *h.Assertion != want {
			t.Fatalf("assertion %+v, want %+v", h.Assertion, want)
		}
		bad := caddyfile.NewTestDispenser("oidc_auth {\n assertion {\n audiences x\n }\n}")
		if err := new(Handler).UnmarshalCaddyfile(bad); err == nil || !strings.Contains(err.Error(), `"audiences"`) {
			t.Fatalf("an unknown option: %v", err)
		}
	})
}

// assertionHandler is the hot-path handler with an assertion, its keys in memory.
func assertionHandler(b *testing.B) *Handler {
	h := hotPathHandler(b)
	h.assertion = &assertionSigner{header: defaultAssertionHeader, audience: "app", lifetime: defaultAssertionLifetime,
		rotation: defaultKeyRotation, cache: newAssertionCache(), keys: startedManager(b, newMemStorage(), h.now)}
	h.headers.manage(defaultAssertionHeader)
	return h
}

// BenchmarkAuthenticatedRequestWithAssertion is the hot path with an assertion, reused from
// the cache after the first request.
func BenchmarkAuthenticatedRequestWithAssertion(b *testing.B) {
	benchServeHTTP(b, assertionHandler(b), "")
}

// BenchmarkSignAssertion is one assertion signed: what a request pays once per session every
// half lifetime.
func BenchmarkSignAssertion(b *testing.B) {
	h := assertionHandler(b)
	s, _ := hotPathSession(h)
	key := h.assertion.keys.current(unitNow)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := key.Sign(claimsOf(s, "https://app.example.com", "app", unitNow, time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}
