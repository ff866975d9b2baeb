package caddymodule

import (
	"strconv"
	"testing"
	"time"
)

func TestCallbackLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	l := newCallbackLimiter()
	for i := 0; i < callbackBurst; i++ {
		if !l.allow("192.0.2.1", now) {
			t.Fatalf("call %d of the burst refused", i+1)
		}
	}
	if l.allow("192.0.2.1", now) {
		t.Fatal("a call past the burst was allowed")
	}
	if !l.allow("192.0.2.2", now) {
		t.Error("another client was refused")
	}
	if !l.allow("192.0.2.1", now.Add(callbackRefill)) {
		t.Error("the budget did not refill")
	}
	if l.allow("192.0.2.1", now.Add(callbackRefill)) {
		t.Error("one refill gave more than one call")
	}
}

func TestLimitKeyGroupsAnIPv6Prefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"not an ip", "not an ip"},
	} {
		if got := limitKey(tc.ip); got != tc.want {
			t.Errorf("limitKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

func TestTheLimiterForgetsIdleClientsWhenFull(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	l := newCallbackLimiter()
	for i := 0; i < 16*maxLimitedClients*2; i++ {
		l.allow("10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), now)
	}

	for i := range l.shards {
		if n := len(l.shards[i].buckets); n > maxLimitedClients {
			t.Fatalf("shard %d holds %d clients, over %d", i, n, maxLimitedClients)
		}

	}
	later := now.Add(callbackBurst * callbackRefill)
	if !l.allow("203.0.113.9", later) {
		t.Error("a new client was refused once the others were idle")
	}

}
