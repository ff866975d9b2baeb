package caddymodule

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

func TestJoinGroupsLeavesOutGroupsWithCommas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		groups []string
		want   string
	}{
		{"plain groups are joined", []string{"staff", "support"}, "staff,support"},
		{"a group named x,admins does not read as admins", []string{"staff", "x,admins"}, "staff"},
		{"control characters cannot split the header", []string{"a\r\nX-Evil: 1"}, "a  X-Evil: 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := joinGroups(tc.groups); got != tc.want {
				t.Errorf("joinGroups(%q) = %q, want %q", tc.groups, got, tc.want)
			}
		})
	}
}

func TestTheIDTokenOfAnImpersonatedSessionIsNotForwarded(t *testing.T) {
	t.Parallel()
	p := newHeaderPlan(&HeadersConfig{IDToken: "X-Id-Token"})
	for _, imp := range []bool{false, true} {
		h := http.Header{}
		p.set(h, &session.Session{Subject: "u", IDToken: "a.b.c", Impersonated: imp, ImpersonatorID: "adm"})
		if got := h.Get("X-Id-Token"); (got == "a.b.c") == imp {
			t.Errorf("impersonated=%v: X-Id-Token %q", imp, got)
		}
	}
}

func TestSameOriginComparesHostsOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		tls     bool
		headers map[string]string
		want    bool
	}{
		{"the site's own origin", false, map[string]string{"Origin": "http://app.example"}, true},
		{"https at the browser, http behind a TLS-ending proxy", false, map[string]string{"Origin": "https://app.example"}, true},
		{"another host", true, map[string]string{"Origin": "https://evil.example"}, false},
		{"a host that only starts like ours", false, map[string]string{"Origin": "http://app.example.evil"}, false},
		{"Origin null from a no-referrer page, same-origin fetch metadata", false, map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, true},
		{"Origin null from another site", false, map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, false},
		{"same-site is not same-origin", false, map[string]string{"Sec-Fetch-Site": "same-site"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "http://app.example/oauth2/confirm", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := sameOrigin(r); got != tc.want {
				t.Errorf("sameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStatesMintedUnderAnOldSecretStillOpenAfterRotation(t *testing.T) {
	t.Parallel()
	old := stateHandler(unitSecretOld)
	state, _ := old.states.mintLogin(unitNow)
	signed, _ := mintSignedState(old, unitNow, "auth0|admin")
	rotated := stateHandler(unitSecretNew)
	rotated.states.login = append(rotated.states.login, old.states.login...)
	rotated.states.signed = append(rotated.states.signed, old.states.signed...)
	if _, ok := rotated.states.openLogin(state); !ok {
		t.Error("a login state minted before the rotation is not recognised")
	}
	if _, ok := rotated.states.openSigned(signed); !ok {
		t.Error("a signed state minted before the rotation is not recognised")
	}
	fresh, _ := rotated.states.mintLogin(unitNow)
	if _, ok := old.states.openLogin(fresh); ok {
		t.Error("the new secret did not mint the new state")
	}
}
