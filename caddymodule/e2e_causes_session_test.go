package caddymodule

import (
	"net/http"
	"testing"
	"time"
)

// A session that ends by time is recorded with whose it was: session_rejected carries the
// session ID, subject and email whenever the cookie opens, also once its sealed value has
// itself expired (sessionGrace after the session). The browser's jar keeps the cookie by the
// real clock while the harness clock moves, as a browser whose clock is behind would.
func TestSessionRejectedCarriesTheIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		reason  string
	}{
		{"an idle session", 2 * time.Hour, "idle"},
		{"an expired session, within the cookie's grace", 12*time.Hour + time.Minute, "expired"},
		{"an expired session whose sealed value has expired too", 12*time.Hour + sessionGrace + time.Hour, "expired"},
	} {
		t.Run(tc.name+" is recorded with its session ID, subject and email", func(t *testing.T) {
			h := newHarness(t, func(c *Handler) { c.SessionIdle = durationOf(time.Hour) }, nil)
			h.login("alice")
			id := h.sessionID()
			h.clock.Advance(tc.advance)
			if res := h.api(http.MethodGet, "/api"); res.status != http.StatusUnauthorized {
				t.Fatalf("an API request with the %s session: %d %.300s", tc.reason, res.status, res.body)
			}
			h.impAudit(evSessionRejected, map[string]string{"reason": tc.reason, "session_id": id,
				"subject": "auth0|alice", "email": "alice@example.com"})
			if ev, _ := h.lastEvent(evSessionRejected); ev["reason"] != tc.reason {
				t.Errorf("reason %q, want exactly %q", ev["reason"], tc.reason)
			}
		})
	}
}
