package caddymodule

import (
	"context"
	"testing"
	"time"
)

func TestLoadStoreSharesOneStorePerKeyUntilReleased(t *testing.T) {
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
