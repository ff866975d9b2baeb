package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The userinfo-only token rule: an impersonated session never forwards an access token, and
// token_audience says which audience a forwarded token was verified for.

// impWithPlaceholders is a harness route: the module in a subroute whose next handler copies
// the {http.auth.user.*} placeholders into X-Ph-* request headers, so the upstream shows them.
func impWithPlaceholders(t *testing.T, oidcAuth json.RawMessage) []json.RawMessage {
	copyPlaceholders := &headers.Handler{Request: &headers.HeaderOps{Set: http.Header{
		"X-Ph-User-Id":            {"{http.auth.user.id}"},
		"X-Ph-Impersonated":       {"{http.auth.user.impersonated}"},
		"X-Ph-Impersonator-Id":    {"{http.auth.user.impersonator.id}"},
		"X-Ph-Impersonator-Email": {"{http.auth.user.impersonator.email}"},
		"X-Ph-Impersonator-Unv":   {"{http.auth.user.impersonator.email_unverified}"},
		"X-Ph-Token-Audience":     {"{http.auth.user.token_audience}"},
	}}}
	sub := &caddyhttp.Subroute{Routes: caddyhttp.RouteList{{HandlersRaw: []json.RawMessage{
		oidcAuth, handlerJSON(t, "headers", copyPlaceholders),
	}}}}
	return []json.RawMessage{handlerJSON(t, "subroute", sub)}
}

// impJWTAudiences decodes a JWT's aud claim (without verifying it: the module did).
func impJWTAudiences(t *testing.T, jwt string) []string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

func TestImpersonationTokenSemantics(t *testing.T) {
	const audience = "https://api.example.com"
	tokenConfig := func(c *Handler) {
		c.Audience = audience
		c.Headers = &HeadersConfig{AccessToken: "Authorization"}
		c.Impersonation = &ImpersonationConfig{Confirm: boolPtr(false)}
	}

	t.Run("an ordinary login forwards the access token it verified for the audience", func(t *testing.T) {
		h := newRoutedHarness(t, tokenConfig, nil, impWithPlaceholders)
		e := h.login("alice")
		jwt, ok := strings.CutPrefix(e.Headers.Get("Authorization"), "Bearer ")
		if !ok {
			t.Fatalf("no bearer token upstream: %q", e.Headers.Get("Authorization"))
		}
		if aud := impJWTAudiences(t, jwt); !slices.Contains(aud, audience) {
			t.Errorf("the forwarded token's audience is %v", aud)
		}
		impWantHeaders(t, e, map[string]string{"X-Ph-Token-Audience": audience, "X-Ph-Impersonated": "false",
			"X-Ph-User-Id": "auth0|alice"})
		if ui := h.impUserinfo(); ui["token_audience"] != audience {
			t.Errorf("userinfo token_audience %v", ui["token_audience"])
		}
		if s := h.impSession(); s.AccessToken != jwt || s.TokenAudience != audience {
			t.Errorf("the session does not hold the verified token for %q: audience %q", audience, s.TokenAudience)
		}
		// The client cannot put its own credential in the token's place.
		e, _ = h.browse("/", "Authorization", "Bearer client-supplied").echo()
		impWantHeaders(t, e, map[string]string{"Authorization": "Bearer " + jwt})
		h.impNoSecretsLogged(jwt)
	})

	t.Run("an impersonated session never forwards its userinfo-only token", func(t *testing.T) {
		h := newRoutedHarness(t, tokenConfig, nil, impWithPlaceholders)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{Scope: "openid profile email"}))
		e, ok := h.browse(loc.String()).echo()
		if !ok {
			t.Fatal("the impersonation did not sign in")
		}
		impWantHeaders(t, e, aliceAsAdmin)
		impWantHeaders(t, e, map[string]string{"Authorization": "", "X-Ph-Token-Audience": "userinfo",
			"X-Ph-Impersonated": "true", "X-Ph-Impersonator-Id": "auth0|admin", "X-Ph-Impersonator-Unv": "admin@example.com"})
		if v := e.Headers.Get("X-Ph-Impersonator-Email"); v != "" {
			t.Errorf("{http.auth.user.impersonator.email} = %q for an email nothing vouches for", v)
		}
		e, _ = h.browse("/", "Authorization", "Bearer client-supplied").echo()
		impWantHeaders(t, e, map[string]string{"Authorization": ""})
		if ui := h.impUserinfo(); ui["token_audience"] != "userinfo" || ui["impersonated"] != true {
			t.Errorf("userinfo: %v", ui)
		}
		if s := h.impSession(); s.AccessToken != "" || s.TokenAudience != "" || s.RefreshToken != "" {
			t.Errorf("the impersonated session keeps a token: access %t, audience %q, refresh %t",
				s.AccessToken != "", s.TokenAudience, s.RefreshToken != "")
		}
	})

	t.Run("a Keycloak-style impersonated login with a JWT for the audience does not forward it either", func(t *testing.T) {
		h := newRoutedHarness(t, tokenConfig, func(c *devidp.Config) { c.Mode = devidp.ModeKeycloak }, impWithPlaceholders)
		h.idp.SetAutoLogin("alice", "admin")
		res := h.browse("/")
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		impWantHeaders(t, e, map[string]string{"X-Forwarded-Impersonator": "auth0|admin", "Authorization": "",
			"X-Ph-Token-Audience": "userinfo"})
		if ui := h.impUserinfo(); ui["token_audience"] != "userinfo" {
			t.Errorf("userinfo token_audience %v", ui["token_audience"])
		}
	})
}
