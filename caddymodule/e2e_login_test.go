package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

func TestOrdinaryLogin(t *testing.T) {
	h := newHarness(t, nil, nil)
	e := h.login("alice")
	for header, want := range map[string]string{
		"X-Forwarded-User":               "auth0|alice",
		"X-Forwarded-Email":              "alice@example.com",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Groups":             "staff",
		"X-Forwarded-Impersonated":       "false",
	} {
		if got := e.Headers.Get(header); got != want {
			t.Errorf("upstream saw %s = %q, want %q", header, got, want)
		}
	}
	if got := e.Headers.Get("Cookie"); strings.Contains(got, "_oidc_auth") {
		t.Errorf("upstream saw the module's cookies: %q", got)
	}
	if ev, ok := h.lastEvent(evLogin); !ok || ev["subject"] != "auth0|alice" {
		t.Errorf("no login audit event for alice: %v", h.events())
	}
	res := h.api(http.MethodGet, "/oauth2/userinfo")
	if res.status != 200 || !strings.Contains(res.body, `"sub":"auth0|alice"`) {
		t.Errorf("userinfo: %d %s", res.status, res.body)
	}
}
