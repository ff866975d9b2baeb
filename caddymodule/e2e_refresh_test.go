package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// newRefreshHarness configures refresh with a forwarded access token; tokens last 10 minutes.
func newRefreshHarness(t *testing.T, extra func(*Handler)) *harness {
	return newHarness(t, func(c *Handler) {
		c.Refresh = true
		c.Scopes = []string{"openid", "profile", "email", "offline_access"}
		c.Audience = "https://api.example.com"
		c.Headers = &HeadersConfig{AccessToken: "Authorization"}
		if extra != nil {
			extra(c)
		}
	}, func(c *devidp.Config) {
		c.AccessTokenTTL = 10 * time.Minute
	})
}

func (h *harness) sessionID() string {
	h.t.Helper()
	var info struct {
		SessionID string `json:"session_id"`
	}
	res := h.api(http.MethodGet, "/oauth2/userinfo")
	if err := json.Unmarshal([]byte(res.body), &info); err != nil || info.SessionID == "" {
		h.t.Fatalf("userinfo: %d %s", res.status, res.body)
	}
	return info.SessionID
}

func TestRefreshFailures(t *testing.T) {
	t.Run("a 429 from the token endpoint keeps the session", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		h.login("alice")
		h.tokenStatus.Store(http.StatusTooManyRequests)
		h.clock.Advance(9*time.Minute + 30*time.Second) // due for renewal, not yet expired
		if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
			t.Fatalf("a throttled refresh ended the session: %d", res.status)
		}
		h.tokenStatus.Store(0)
		h.clock.Advance(35 * time.Second) // the lock of the failed attempt is released at once
		if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("Authorization") == "" {
			t.Errorf("no renewal once the provider answered again")
		}
	})
	t.Run("invalid_grant ends the session", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		h.login("alice")
		h.tokenStatus.Store(http.StatusBadRequest)
		h.clock.Advance(9*time.Minute + 30*time.Second)
		if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
			t.Fatalf("a refused refresh token kept the session: %d", res.status)
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": "refresh refused"})
	})
	t.Run("a request that finds a refresh under way writes no cookie over the renewed one", func(t *testing.T) {
		h := newRefreshHarness(t, func(c *Handler) { c.SessionIdle = durationOf(time.Hour) })
		h.login("alice")
		id := h.sessionID()
		h.clock.Advance(9*time.Minute + 30*time.Second) // renewal and idle clock both due
		unlock, ok, err := h.handler.store.TryLock(context.Background(), "refresh\x00"+id, time.Minute)
		if !ok || err != nil {
			t.Fatal("could not take the refresh lock")
		}
		defer unlock()
		res := h.api(http.MethodGet, "/")
		if res.status != http.StatusOK {
			t.Fatalf("%d", res.status)
		}
		if sc := res.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("a request without the renewal wrote cookies: %q", sc)
		}
	})
	t.Run("a renewed identity must still pass the allow rules", func(t *testing.T) {
		h := newRefreshHarness(t, func(c *Handler) {
			c.Allow = &AllowConfig{Expression: `request.path != "/revoked"`}
		})
		h.login("alice")
		h.clock.Advance(9*time.Minute + 30*time.Second)
		if res := h.api(http.MethodGet, "/revoked"); res.status != http.StatusUnauthorized {
			t.Fatalf("a renewal the allow rules refuse kept the session: %d", res.status)
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": "no longer admitted"})
	})
}
