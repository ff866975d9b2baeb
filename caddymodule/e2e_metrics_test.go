package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	dto "github.com/prometheus/client_model/go"
)

// metricValue sums the samples of the metric name whose labels include want, from the
// running configuration's registry, as Caddy's metrics endpoint would serve them.
func metricValue(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	ctx := caddy.ActiveContext()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue samples
				}
			}
			total += sampleValue(m)
		}
	}
	return total
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetricsAreScraped(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Impersonators: []string{"auth0|admin"}}), nil)
	h.login("alice")
	if res := h.impOtherBrowser().browse(h.impLink("bob", "mallory", impParams{})); res.status != http.StatusForbidden {
		t.Fatalf("a refused impersonation: %d", res.status)
	}
	h.impOtherBrowser().browse(h.impLink("bob", "admin", impParams{}))
	h.browse("/oauth2/callback?code=forged&state=" + strings.Repeat("x", 40))
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		atLeast float64
	}{
		{"caddy_oidc_auth_logins_total", map[string]string{"result": "success"}, 1},
		{"caddy_oidc_auth_impersonations_total", map[string]string{"event": "denied", "reason": "impersonator not allowed"}, 1},
		{"caddy_oidc_auth_impersonations_total", map[string]string{"event": "started"}, 1},
		{"caddy_oidc_auth_unsolicited_total", map[string]string{"outcome": "refused"}, 2},
		{"caddy_oidc_auth_unsolicited_total", map[string]string{"outcome": "accepted"}, 1},
		{"caddy_oidc_auth_provider_request_duration_seconds", map[string]string{"endpoint": "discovery"}, 1},
		{"caddy_oidc_auth_provider_request_duration_seconds", map[string]string{"endpoint": "token"}, 2},
		{"caddy_oidc_auth_provider_request_duration_seconds", map[string]string{"endpoint": "userinfo"}, 2},
		{"caddy_oidc_auth_provider_request_duration_seconds", map[string]string{"endpoint": "jwks"}, 1},
	} {
		if got := metricValue(t, tc.name, tc.labels); got < tc.atLeast {
			t.Errorf("%s%v = %v, want at least %v", tc.name, tc.labels, got, tc.atLeast)
		}
	}
}
