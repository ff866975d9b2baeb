package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestLogoutURL(t *testing.T) {
	t.Parallel()
	h := &Handler{provider: &provider{cfg: providerConfig{clientID: "app"}}}
	for _, tc := range []struct {
		name       string
		d          discovered
		hint       string
		wantPrefix string
		wantQuery  url.Values
	}{
		{"the provider's end_session_endpoint, with the ID token hint when kept",
			discovered{issuer: "https://op.example/", endSessionURL: "https://op.example/logout?x=1"}, "a.b.c",
			"https://op.example/logout?", url.Values{"x": {"1"}, "client_id": {"app"}, "post_logout_redirect_uri": {"https://site/bye"}, "id_token_hint": {"a.b.c"}}},
		{"Auth0 without RP-initiated logout: /v2/logout",
			discovered{issuer: "https://tenant.eu.auth0.com/"}, "",
			"https://tenant.eu.auth0.com/v2/logout?", url.Values{"client_id": {"app"}, "returnTo": {"https://site/bye"}}},
		{"another provider without logout: none", discovered{issuer: "https://op.example/"}, "", "", nil},
		{"a host that merely contains auth0.com is not Auth0", discovered{issuer: "https://auth0.com.evil.example/"}, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := h.provider.logoutURL(&tc.d, "https://site/bye", tc.hint)
			if tc.wantPrefix == "" {
				if got != "" {
					t.Fatalf("logoutURL = %q, want none", got)
				}
				return
			}
			u, err := url.Parse(got)
			if err != nil || got[:len(tc.wantPrefix)] != tc.wantPrefix {
				t.Fatalf("logoutURL = %q, want %s...", got, tc.wantPrefix)
			}
			if q := u.Query(); q.Encode() != tc.wantQuery.Encode() {
				t.Errorf("query %v, want %v", q, tc.wantQuery)
			}
		})
	}
}

func TestAbsoluteURLFollowsAnAbsoluteRedirectURI(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "http://internal:8080/oauth2/logout", nil) // TLS ended by a proxy
	for _, tc := range []struct{ redirectURI, want string }{
		{"https://app.example.com/oauth2/callback", "https://app.example.com/bye"},
		{"/oauth2/callback", "http://internal:8080/bye"},
	} {
		h := &Handler{RedirectURI: tc.redirectURI}
		if got := h.absoluteURL(r, "/bye"); got != tc.want {
			t.Errorf("redirect_uri %s: absoluteURL = %q, want %q", tc.redirectURI, got, tc.want)
		}
	}
}
