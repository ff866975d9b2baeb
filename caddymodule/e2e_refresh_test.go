package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
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

// newOnlineRefreshHarness is newRefreshHarness without offline_access: the provider sends no
// refresh token.
func newOnlineRefreshHarness(t *testing.T) *harness {
	return newRefreshHarness(t, func(c *Handler) { c.Scopes = []string{"openid", "profile", "email"} })
}

func TestRefreshWithoutRefreshToken(t *testing.T) {
	const reason = "access token expired and no refresh token (request offline_access)"
	t.Run("a session forwarding an access token ends when the token expires", func(t *testing.T) {
		h := newOnlineRefreshHarness(t)
		if e := h.login("alice"); e.Headers.Get("Authorization") == "" {
			t.Fatal("no access token forwarded after login")
		}
		var info struct {
			ExpiresAt int64 `json:"expires_at"`
		}
		res := h.api(http.MethodGet, "/oauth2/userinfo")
		if err := json.Unmarshal([]byte(res.body), &info); err != nil {
			t.Fatalf("userinfo: %d %s", res.status, res.body)
		}
		if want := h.clock.Now().Add(10 * time.Minute).Unix(); info.ExpiresAt < want-5 || info.ExpiresAt > want+5 {
			t.Errorf("session expires at %d, want the token's expiry %d", info.ExpiresAt, want)
		}
		h.clock.Advance(9 * time.Minute)
		if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
			t.Fatalf("the session ended before its token expired: %d", res.status)
		}
		h.clock.Advance(90 * time.Second)
		if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
			t.Fatalf("a session forwarding an expired token went on: %d", res.status)
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": reason, "subject": "auth0|alice"})
		if got := h.refreshGrants.Load(); got != 0 {
			t.Errorf("%d refresh grants without a refresh token", got)
		}
	})
	t.Run("a session that was not capped ends at request time", func(t *testing.T) {
		h := newOnlineRefreshHarness(t)
		h.login("alice") // discovery done, the handler provisioned
		s := advAlice(h)
		s.Expires = h.clock.Now().Add(12 * time.Hour) // as issued before sessions were capped
		s.AccessToken, s.TokenAudience = "an-access-token", "https://api.example.com"
		s.TokenExpiry = h.clock.Now().Add(10 * time.Minute)
		cookie := h.handler.jar.Base + "=" + advSeal(h, session.PurposeSession, s)
		req := func() result {
			req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", cookie)
			resp, err := http.DefaultTransport.RoundTrip(req) // this cookie alone, not the jar's
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			return result{status: resp.StatusCode, header: resp.Header}
		}
		if res := req(); res.status != http.StatusOK {
			t.Fatalf("control: %d", res.status)
		}
		h.clock.Advance(11 * time.Minute)
		if res := req(); res.status != http.StatusUnauthorized {
			t.Fatalf("a session forwarding an expired token went on: %d", res.status)
		}
		h.impAudit(evSessionRejected, map[string]string{"reason": reason, "session_id": s.ID})
	})
	t.Run("with offline_access the session outlives the token (control)", func(t *testing.T) {
		h := newRefreshHarness(t, nil)
		h.login("alice")
		h.clock.Advance(11 * time.Minute)
		if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("Authorization") == "" {
			t.Fatal("the session did not outlive its first token")
		}
	})
}

func TestRefreshWithoutOfflineAccessWarnsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scopes []string
		warns  bool
	}{
		{"refresh on without offline_access warns, naming both options", []string{"openid", "email"}, true},
		{"refresh on with offline_access does not", []string{"openid", "email", "offline_access"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, port := startHarness(t, nil)
			hc := h.handlerConfig(func(c *Handler) { c.Refresh, c.Scopes = true, tc.scopes })
			logs := h.loadWith(port, nil, handlerJSON(t, "oidc_auth", &hc))
			var found []string
			for _, l := range logs() {
				if l.Level == "warn" && strings.Contains(l.Msg, "offline_access") {
					found = append(found, l.Msg)
				}
			}
			if !tc.warns {
				if len(found) > 0 {
					t.Errorf("unexpected warning: %q", found)
				}
				return
			}
			if len(found) != 1 {
				t.Fatalf("want one warning about offline_access, got %q", found)
			}
			for _, word := range []string{"refresh", "scopes", "offline_access", "Auth0", "Keycloak"} {
				if !strings.Contains(found[0], word) {
					t.Errorf("the warning does not name %s: %q", word, found[0])
				}
			}
		})
	}
}
