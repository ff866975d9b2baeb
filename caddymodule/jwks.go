package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

const (
	// keysMinRefetch: a token naming a key the set does not have fetches the provider's keys
	// again at most this often, so forged tokens cannot make this server hammer the provider.
	keysMinRefetch = 10 * time.Second
	// keysMaxAge: keys older than this are fetched again before they are used, so a key the
	// provider withdrew stops verifying.
	keysMaxAge = time.Hour
	// maxJWKS bounds the key set document read.
	maxJWKS = 1 << 20
)

var (
	errKeysUnavailable = errors.New("the provider's keys are unavailable")
	errUnknownKey      = errors.New("signed by a key the provider does not publish")
	errBadSignature    = errors.New("signature does not verify")
)

// keySet holds the provider's signing keys for bearer tokens. Verifying with keys it has
// makes no network call; it fetches them only when it has none, when they are old, or when a
// token names a key it does not know — at most once per keysMinRefetch.
type keySet struct {
	url     string
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	logger  *zap.Logger

	cur     atomic.Pointer[fetchedKeys]
	fetchMu sync.Mutex // one fetch at a time; guards tried
	tried   time.Time  // when the last fetch was attempted
}

type fetchedKeys struct {
	keys []jose.JSONWebKey
	at   time.Time
}

// verify checks the token's signature with the provider's key it names and returns the
// payload.
func (k *keySet) verify(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	kid := jws.Signatures[0].Protected.KeyID
	alg := jws.Signatures[0].Protected.Algorithm
	now := k.now()
	f := k.cur.Load()
	if f != nil && now.Sub(f.at) >= keysMaxAge {
		// Old keys go on verifying while newer ones are fetched: no request waits for that.
		k.refreshInBackground(ctx, f, now)
	}
	if f == nil || len(f.match(kid, alg)) == 0 {
		var err error
		if f, err = k.refresh(ctx, f, now); err != nil {
			return nil, err
		}
	}
	keys := f.match(kid, alg)
	if len(keys) == 0 {
		return nil, errUnknownKey
	}
	for i := range keys {
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, nil
		}
	}
	return nil, errBadSignature
}

// refresh fetches the keys unless a fetch was tried within keysMinRefetch; it returns the
// keys to use (the old ones when the fetch fails but they exist).
func (k *keySet) refresh(ctx context.Context, old *fetchedKeys, now time.Time) (*fetchedKeys, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	return k.refreshLocked(ctx, old, now)
}

// refreshInBackground fetches the keys in a goroutine, unless a fetch is under way.
func (k *keySet) refreshInBackground(ctx context.Context, old *fetchedKeys, now time.Time) {
	if !k.fetchMu.TryLock() {
		return
	}
	go func() {
		defer k.fetchMu.Unlock()
		_, _ = k.refreshLocked(ctx, old, now)
	}()
}

// refreshLocked is refresh with fetchMu held.
func (k *keySet) refreshLocked(ctx context.Context, old *fetchedKeys, now time.Time) (*fetchedKeys, error) {
	if cur := k.cur.Load(); cur != old && cur != nil {
		return cur, nil // fetched while this request waited
	}
	if !k.tried.IsZero() && now.Sub(k.tried) < keysMinRefetch {
		if old == nil {
			return nil, errKeysUnavailable
		}
		return old, nil
	}
	k.tried = now
	keys, err := k.fetch(ctx)
	if err != nil {
		k.logger.Warn("fetching the provider's keys for bearer tokens", zap.String("jwks_uri", k.url), zap.Error(err))
		if old == nil {
			return nil, fmt.Errorf("%w: %v", errKeysUnavailable, err)
		}
		return old, nil
	}
	f := &fetchedKeys{keys: keys, at: now}
	k.cur.Store(f)
	return f, nil
}

// fetch reads the key set document, keeping the public signing keys.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	if k.url == "" {
		return nil, errors.New("the discovery document names no jwks_uri")
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %s", resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKS)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decoding the key set: %w", err)
	}
	// Each key on its own: one of a type this server does not know (a new curve, an
	// encryption key) must not take the others with it.
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if key.UnmarshalJSON(raw) == nil && key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// match returns the keys that may have signed a token naming kid with alg: the one with that
// kid, or for a token without kid every key whose algorithm, if stated, is alg.
func (f *fetchedKeys) match(kid, alg string) []jose.JSONWebKey {
	if f == nil {
		return nil
	}
	for i := range f.keys {
		if kid != "" && f.keys[i].KeyID == kid {
			return f.keys[i : i+1]
		}
	}
	if kid != "" {
		return nil
	}
	var out []jose.JSONWebKey
	for _, key := range f.keys {
		if key.Algorithm == "" || key.Algorithm == alg {
			out = append(out, key)
		}
	}
	return out
}
