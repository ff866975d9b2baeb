package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// Ending sessions early: the admin API and Back-Channel Logout, through real Caddy.

// adminCall calls the admin API's handler as Caddy's admin endpoint would.
func adminCall(t *testing.T, a *AdminAPI, method, target string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	var handler caddyAdminHandler
	for _, rt := range a.Routes() {
		if strings.HasPrefix(req.URL.Path, rt.Pattern) {
			handler = rt.Handler
		}
	}
	if err := handler.ServeHTTP(rec, req); err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		return apiErr.HTTPStatus, apiErr.Error()
	}
	return rec.Code, rec.Body.String()
}

type caddyAdminHandler interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

func TestAdminAPIListsAndRevokesSessions(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.login("alice")
	bob := h.impOtherBrowser()
	bob.login("bob")
	core, logs := observer.New(zapcore.InfoLevel)
	a := &AdminAPI{audit: zap.New(core)}

	status, body := adminCall(t, a, http.MethodGet, "/oidc_auth/sessions?sub="+url.QueryEscape("auth0|alice"))
	var list struct {
		Sessions []store.SessionRecord `json:"sessions"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Sessions) != 1 || list.Sessions[0].ID != h.sessionID() {
		t.Fatalf("listing alice's sessions: %d %s", status, body)
	}
	if status, body := adminCall(t, a, http.MethodDelete, "/oidc_auth/sessions/"+list.Sessions[0].ID); status != http.StatusOK || !strings.Contains(body, `"revoked":1`) {
		t.Fatalf("revoking alice's session: %d %s", status, body)
	}
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("alice after the revocation: %d", res.status)
	}
	h.impAudit(evSessionRejected, map[string]string{"subject": "auth0|alice", "reason": "revoked"})
	if ev := logs.FilterMessage(evSessionRevoked).All(); len(ev) != 1 || ev[0].ContextMap()["via"] != "admin_api" {
		t.Errorf("session_revoked events: %v", ev)
	}
	if res := bob.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Errorf("bob's session went too: %d", res.status)
	}
	if status, _ := adminCall(t, a, http.MethodDelete, "/oidc_auth/sessions?sub="+url.QueryEscape("auth0|bob")); status != http.StatusOK {
		t.Errorf("revoking bob's sessions: %d", status)
	}
	if res := bob.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("bob after the revocation: %d", res.status)
	}
	if n := metricValue(t, "caddy_oidc_auth_sessions_revoked_total", map[string]string{"via": "admin_api"}); n != 2 {
		t.Errorf("sessions_revoked_total{via=admin_api} = %v, want 2", n)
	}
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodDelete, "/oidc_auth/sessions", http.StatusBadRequest},
		{http.MethodDelete, "/oidc_auth/sessions/no-such-session", http.StatusNotFound},
		{http.MethodPost, "/oidc_auth/sessions", http.StatusMethodNotAllowed},
	} {
		if status, body := adminCall(t, a, tc.method, tc.target); status != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.target, status, body, tc.want)
		}
	}
}

// backchannelHarness is a harness whose provider sends logout tokens to the site.
func backchannelHarness(t *testing.T) *harness {
	return newHarness(t, nil, func(c *devidp.Config) {
		c.Clients[0].BackchannelLogoutURI = strings.TrimSuffix(c.Clients[0].RedirectURIs[0], "callback") + "backchannel-logout"
	})
}

func TestBackchannelLogoutEndsTheProvidersSessions(t *testing.T) {
	h := backchannelHarness(t)
	h.login("alice")
	bob := h.impOtherBrowser()
	bob.login("bob")
	if n := h.idp.EndSession("auth0|alice"); n == 0 {
		t.Fatal("the provider ended no session")
	}
	deliveries := h.idp.BackchannelDeliveries()
	if len(deliveries) == 0 || deliveries[len(deliveries)-1].Status != http.StatusOK {
		t.Fatalf("the logout token was not accepted: %+v", deliveries)
	}
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("alice after the provider's logout: %d", res.status)
	}
	h.impAudit(evSessionRevoked, map[string]string{"subject": "auth0|alice", "reason": "back-channel logout"})
	if n := metricValue(t, "caddy_oidc_auth_sessions_revoked_total", map[string]string{"via": "backchannel"}); n < 1 {
		t.Errorf("sessions_revoked_total{via=backchannel} = %v", n)
	}
	if res := bob.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Errorf("bob's session went too: %d", res.status)
	}
}

func TestBackchannelLogoutRefusesBadTokens(t *testing.T) {
	h := backchannelHarness(t)
	h.login("alice")
	post := func(tok string) int {
		res := h.impOtherBrowser().postForm("/oauth2/backchannel-logout", url.Values{"logout_token": {tok}})
		return res.status
	}
	mint := func(opts ...devidp.LogoutTokenOption) string {
		tok, err := h.idp.MintLogoutToken(testClientID, "auth0|alice", "", opts...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"with a nonce", mint(devidp.LogoutWithNonce("n"))},
		{"without the event", mint(devidp.LogoutWithoutEvent())},
		{"for another client", mint(devidp.LogoutAudience("another-client"))},
		{"from another issuer", mint(devidp.LogoutIssuer("https://evil.example/"))},
		{"expired", mint(devidp.LogoutExpired())},
		{"unsigned", mint(devidp.LogoutUnsigned())},
		{"garbage", "not.a.jwt"},
		{"empty", ""},
	} {
		if got := post(tc.tok); got != http.StatusBadRequest {
			t.Errorf("a logout token %s: %d, want 400", tc.name, got)
		}
	}
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusOK {
		t.Fatalf("a refused logout token ended the session: %d", res.status)
	}
	good := mint()
	if got := post(good); got != http.StatusOK {
		t.Fatalf("a good logout token: %d", got)
	}
	if got := post(good); got != http.StatusBadRequest {
		t.Errorf("the same logout token again: %d, want 400 (jti replayed)", got)
	}
	if res := h.api(http.MethodGet, "/"); res.status != http.StatusUnauthorized {
		t.Errorf("after a good logout token: %d", res.status)
	}
}

func TestRedisRevocationReachesEveryInstanceWithinASecond(t *testing.T) {
	addr, _ := startRedis(t)
	revocationReachesEveryInstance(t, addr, "t:{site}:")
}

// With Redis Cluster too: each site's keys share a slot (a multi-key registry read, a
// transaction per revocation), and the resync scans the node holding them — for sites on each
// of the three masters, so that scanning any one node would miss the others.
func TestRedisClusterRevocationReachesEveryInstance(t *testing.T) {
	addr := startRedisCluster(t)
	client, err := newRedisClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	bySite := map[string]string{}
	for i := 0; len(bySite) < 3 && i < 100; i++ {
		prefix := "t:{site-" + strconv.Itoa(i) + "}:"
		m, err := client.(*redis.ClusterClient).MasterForKey(context.Background(), prefix+"revocations")
		if err != nil {
			t.Fatal(err)
		}
		if _, seen := bySite[m.Options().Addr]; !seen {
			bySite[m.Options().Addr] = prefix
		}
	}
	if len(bySite) != 3 {
		t.Fatalf("sites on %d masters, want 3", len(bySite))
	}
	for node, prefix := range bySite {
		t.Run(node, func(t *testing.T) { revocationReachesEveryInstance(t, addr, prefix) })
	}
}

func revocationReachesEveryInstance(t *testing.T, addr, prefix string) {
	client, err := newRedisClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	a := newRedisStore(client, prefix)
	t.Cleanup(func() { _ = a.Destruct() })
	rec := store.SessionRecord{ID: "s1", Subject: "auth0|alice", SID: "op-1", Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := a.Register(ctx, rec); err != nil {
		t.Fatal(err)
	}
	early := store.SessionRecord{ID: "s0", Subject: "auth0|bob", Expires: time.Now().Add(time.Hour)}
	if err := a.Revoke(ctx, []store.SessionRecord{early}); err != nil {
		t.Fatal(err)
	}
	b := newRedisStore(client, prefix) // another instance, started after the first revocation
	t.Cleanup(func() { _ = b.Destruct() })
	if recs, err := b.Sessions(ctx, store.Filter{SID: "op-1"}); err != nil || len(recs) != 1 || recs[0].ID != "s1" {
		t.Fatalf("the registry as another instance sees it: %v %v", recs, err)
	}
	// Its subscription resynchronises what was revoked before it; then a new revocation
	// arrives by pub/sub. Polling measures the propagation; the bound is the contract.
	start := time.Now()
	if err := a.Revoke(ctx, []store.SessionRecord{rec}); err != nil {
		t.Fatal(err)
	}
	for !b.Revoked("s1") || !b.Revoked("s0") {
		if time.Since(start) > time.Second {
			t.Fatalf("after %v the other instance knows s1 %v, s0 %v", time.Since(start), b.Revoked("s1"), b.Revoked("s0"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation propagated in %v", time.Since(start))
}
