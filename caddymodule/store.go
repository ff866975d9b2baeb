package caddymodule

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// storeBackend is a module of the http.handlers.oidc_auth.stores namespace: it opens the
// store of one provider and client (key), which every handler of that pair shares.
type storeBackend interface {
	openStore(key string) (store.Store, error)
}

// provisionStore loads the configured store module, or the default memory store.
func (h *Handler) provisionStore(ctx caddy.Context) error {
	key := h.Issuer + "\x00" + h.ClientID
	var backend storeBackend
	if len(h.StoreRaw) > 0 {
		mod, err := ctx.LoadModule(h, "StoreRaw")
		if err != nil {
			return fmt.Errorf("oidc_auth store: %w", err)
		}
		var ok bool
		if backend, ok = mod.(storeBackend); !ok {
			return fmt.Errorf("oidc_auth store: module %T is not a store", mod)
		}
	} else {
		h.ownStore = new(MemoryStore)
		backend = h.ownStore
	}
	var err error
	if h.store, err = backend.openStore(key); err != nil {
		return fmt.Errorf("oidc_auth store: %w", err)
	}
	return nil
}

// MemoryStore keeps the shared state in this process: one store per provider and client,
// kept across config reloads (so a reload does not forget which codes and tokens were used),
// and seen by this instance only.
type MemoryStore struct {
	key string
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_auth.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

func (m *MemoryStore) openStore(key string) (store.Store, error) {
	s, err := loadStore(key)
	if err == nil {
		m.key = key
	}
	return s, err
}

// Cleanup releases this user's share of the store.
func (m *MemoryStore) Cleanup() error {
	if m.key == "" {
		return nil
	}
	key := m.key
	m.key = ""
	return releaseStore(key)
}

// UnmarshalCaddyfile reads `store memory`, which takes no options.
func (m *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("unrecognized memory store option %q", d.Val())
	}
	return nil
}

// stores keeps one memory store per issuer and client across config reloads.
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

// Interface guards
var (
	_ storeBackend          = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
)
