package caddymodule

import (
	"strconv"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

func TestTheDecisionCacheIsBoundedAndForgetsEndedSessions(t *testing.T) {
	t.Parallel()
	c := newDecisionCache()
	now := unitNow
	c.put("gone", decision{}, now.Add(time.Minute), now)
	if _, ok := c.get("gone", now.Add(time.Minute)); ok {
		t.Error("a decision outlived its session")
	}
	for i := range len(c.shards)*maxDecisionsPerShard + 500 {
		c.put("s"+strconv.Itoa(i), decision{}, now.Add(time.Hour), now)
	}
	if n := c.len(); n > len(c.shards)*maxDecisionsPerShard {
		t.Errorf("%d decisions kept, more than the bound %d", n, len(c.shards)*maxDecisionsPerShard)
	}
	c.drop("s1")
	if _, ok := c.get("s1", now); ok {
		t.Error("a dropped decision is still there")
	}
}

func TestTheSessionsIdentityIsWhatTheRulesSee(t *testing.T) {
	t.Parallel()
	s := &session.Session{ID: "i", Subject: "auth0|alice", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"staff"}, RuleClaims: `{"roles":["user"],"email":"spoofed@example.com"}`,
		Impersonated: true, ImpersonatorID: "auth0|admin", ImpersonatorEmail: "admin@example.com"}
	id, err := identityOf(s, "groups")
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "auth0|alice" || id.Email != "alice@example.com" || !id.EmailVerified || len(id.Groups) != 1 ||
		id.Imp == nil || id.Imp.ID != "auth0|admin" || id.Imp.EmailVerified {
		t.Fatalf("identity %+v (impersonator %+v)", id, id.Imp)
	}
	if roles, _ := id.Claims["roles"].([]any); len(roles) != 1 || roles[0] != "user" {
		t.Errorf("kept claims: %v", id.Claims)
	}
	if _, err := identityOf(&session.Session{ID: "i", Subject: "s", RuleClaims: "{"}, "groups"); err == nil {
		t.Error("undecodable kept claims were accepted")
	}
}

func BenchmarkAuthorizedRequest(b *testing.B) {
	for _, tc := range []struct{ name, expr string }{
		{"a cached decision", `"staff" in claims.groups`},
		{"a request-dependent expression", `"staff" in claims.groups && !request.path.startsWith("/admin")`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := hotPathHandler(b)
			var err error
			if h.allow, err = (&AllowConfig{Groups: []string{"staff"}, Expression: tc.expr}).compile(); err != nil {
				b.Fatal(err)
			}
			h.needs = h.allow.Needs()
			h.decisions = newDecisionCache()
			benchServeHTTP(b, h, "")
		})
	}
}

// BenchmarkServerSideSession is the authenticated path with server-side sessions, the
// session in the local cache after the first request: a ticket to open instead of a session.
func BenchmarkServerSideSession(b *testing.B) {
	h := hotPathHandler(b)
	h.ServerSideSessions = true
	h.tickets = newTicketCache()
	benchServeHTTP(b, h, "")
}
