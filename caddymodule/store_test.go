package caddymodule

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestLoadStoreSharesOneStorePerKeyUntilReleased(t *testing.T) {
	t.Parallel()
	key := "https://idp.example.com/\x00" + t.Name()
	a, err := loadStore(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadStore(key)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("two loads of one key gave two stores")
	}
	other, err := loadStore(key + "-other")
	if err != nil {
		t.Fatal(err)
	}
	if other == a {
		t.Errorf("two keys share a store")
	}
	if ok, _ := a.Claim(context.Background(), "code\x00x", time.Now().Add(time.Minute)); !ok {
		t.Fatal("first claim refused")
	}
	if ok, _ := b.Claim(context.Background(), "code\x00x", time.Now().Add(time.Minute)); ok {
		t.Errorf("a code claimed through one handle was claimed again through the other: a reload would forget replays")
	}
	for _, k := range []string{key, key, key + "-other"} {
		if err := releaseStore(k); err != nil {
			t.Fatalf("releaseStore: %v", err)
		}
	}
	c, err := loadStore(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = releaseStore(key) })
	if c == a {
		t.Errorf("after every user released it the store was kept")
	}
}

func TestTheStoreOptionLoadsAStoreModule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, input, want, wantErr string
	}{
		{"store memory names the memory backend", "oidc_auth {\n store memory\n}", `{"backend":"memory"}`, ""},
		{"a backend that does not exist is refused", "oidc_auth {\n store nosuch\n}", "", "http.handlers.oidc_auth.stores.nosuch"},
		{"store needs a backend", "oidc_auth {\n store\n}", "", "store takes a backend name"},
		{"the memory store takes no arguments", "oidc_auth {\n store memory extra\n}", "", "wrong argument count"},
		{"the memory store takes no options", "oidc_auth {\n store memory {\n size 10\n }\n}", "", `unrecognized memory store option "size"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(h.StoreRaw) != tc.want {
				t.Fatalf("StoreRaw = %s, err %v; want %s", h.StoreRaw, err, tc.want)
			}
		})
	}
}

func TestAConfiguredMemoryStoreIsSharedLikeTheDefault(t *testing.T) {
	t.Parallel()
	provision := func(raw string) *Handler {
		h := &Handler{Issuer: "https://idp.example.com/", ClientID: t.Name(), SessionSecrets: []string{testSecret},
			StoreRaw: json.RawMessage(raw)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := h.Provision(ctx); err != nil {
			t.Fatalf("Provision: %v", err)
		}
		t.Cleanup(func() { _ = h.Cleanup() })
		return h
	}
	configured, def := provision(`{"backend":"memory"}`), provision("")
	if configured.ownStore != nil || def.ownStore == nil {
		t.Fatalf("a configured store module was not loaded, or the default was not used")
	}
	if unwrapStore(configured.store) != unwrapStore(def.store) {
		t.Errorf("the memory module and the default hold different stores for one issuer and client")
	}
}
