package caddymodule

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// stores keeps one memory store per issuer and client across config reloads, so a reload
// does not forget which codes and tokens were already used.
var stores = caddy.NewUsagePool()

type pooledStore struct{ *store.Memory }

func (pooledStore) Destruct() error { return nil }

func loadStore(key string) (store.Store, error) {
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledStore{store.NewMemory(nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	ps, ok := v.(pooledStore)
	if !ok {
		return nil, errors.New("store pool holds an unexpected value")
	}
	return ps.Memory, nil
}

func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}
