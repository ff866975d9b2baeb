package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// errorsSite runs real Caddy from a Caddyfile: oidc_auth in front of an echoing upstream,
// against the development provider, with the site's own handle_errors block when errorsBlock
// is not empty. It returns the site's URL, a browser-like client and the provider's server.
func errorsSite(t *testing.T, allow, errorsBlock string) (string, *http.Client, *httptest.Server) {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)
	site := "http://127.0.0.1:" + freePort(t)
	idpSrv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + idpSrv.Listener.Addr().String() + "/"
	idp, err := devidp.New(devidp.Config{Issuer: issuer, Clients: []devidp.Client{{ID: testClientID, Secret: testClientSecret,
		RedirectURIs: []string{site + "/oauth2/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv.Config.Handler = idp
	idpSrv.Start()
	t.Cleanup(idpSrv.Close)
	idp.SetAutoLogin("alice", "")
	upstream := newEchoUpstream(t)
	caddyfileText := caddyfileGlobals + site + ` {
	oidc_auth {
		issuer ` + issuer + `
		client_id ` + testClientID + `
		client_secret ` + testClientSecret + `
		session_secret ` + testSecret + `
		cookie {
			insecure
		}
		` + allow + `
	}
	reverse_proxy ` + upstream.addr + `
	` + errorsBlock + `
}
`
	loadCaddyfile(t, caddyfileText)
	jar, _ := cookiejar.New(nil)
	return site, &http.Client{Jar: jar, Timeout: 20 * time.Second}, idpSrv
}

// The README's example: the site styles the module's refusals itself.
const readmeErrorsBlock = `handle_errors 401 403 429 502 503 {
		header Content-Type "text/plain; charset=utf-8"
		respond "{err.status_code} {oidc_auth.error.title}: {err.message} [{oidc_auth.error.code}] retry at {oidc_auth.error.retry}" {err.status_code}
	}`

func get(t *testing.T, c *http.Client, target, accept string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestHandleErrorsRendersTheModulesRefusals(t *testing.T) {
	t.Run("a 401 for an API request goes through the site's handle_errors", func(t *testing.T) {
		site, c, _ := errorsSite(t, "", readmeErrorsBlock)
		status, body, hdr := get(t, c, site+"/api", "application/json")
		want := "401 Sign-in required: You need to sign in to use this site. [unauthenticated] retry at /oauth2/start?rd=%2F"
		if status != http.StatusUnauthorized || body != want {
			t.Fatalf("got %d %q, want 401 %q", status, body, want)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", hdr.Get("Cache-Control"))
		}
	})
	t.Run("a 403 of the allow rules goes through handle_errors", func(t *testing.T) {
		site, c, _ := errorsSite(t, "allow {\n\t\t\temails nobody@example.com\n\t\t}", readmeErrorsBlock)
		status, body, _ := get(t, c, site+"/", "text/html")
		if status != http.StatusForbidden || !strings.HasPrefix(body, "403 Access denied: You are signed in, but this site does not admit your account. [access_denied]") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("a 502 for an unreachable provider goes through handle_errors", func(t *testing.T) {
		site, c, provider := errorsSite(t, "", readmeErrorsBlock)
		provider.Close()
		status, body, _ := get(t, c, site+"/", "text/html")
		want := "502 Sign-in is unavailable: The identity provider is unreachable right now. Please try again in a moment. [provider_unreachable]"
		if status != http.StatusBadGateway || !strings.HasPrefix(body, want) {
			t.Fatalf("got %d %q, want 502 %q", status, body, want)
		}
	})
	t.Run("a 400 bad callback keeps the module's own page", func(t *testing.T) {
		site, c, _ := errorsSite(t, "", readmeErrorsBlock)
		status, body, _ := get(t, c, site+"/oauth2/callback?code=x&state=x&state=y", "text/html")
		if status != http.StatusBadRequest || !strings.Contains(body, "<title>Sign-in could not be completed") {
			t.Fatalf("got %d %.300q, want the module's 400 page", status, body)
		}
	})
	t.Run("without handle_errors the module answers 401 with its own JSON", func(t *testing.T) {
		site, c, _ := errorsSite(t, "", "")
		status, body, _ := get(t, c, site+"/api", "application/json")
		if status != http.StatusUnauthorized || !strings.Contains(body, `"error":"unauthenticated"`) {
			t.Fatalf("got %d %q, want the module's JSON 401", status, body)
		}
	})
	t.Run("without handle_errors the module answers 403 with its own page", func(t *testing.T) {
		site, c, _ := errorsSite(t, "allow {\n\t\t\temails nobody@example.com\n\t\t}", "")
		status, body, _ := get(t, c, site+"/", "text/html")
		if status != http.StatusForbidden || !strings.Contains(body, "<title>Access denied") {
			t.Fatalf("got %d %.300q, want the module's 403 page", status, body)
		}
	})
}

// caddyfileGlobals are the global options of the tests' Caddyfiles.
const caddyfileGlobals = `{
	admin off
	auto_https off
	log {
		level ERROR
	}
}
`

// loadCaddyfile adapts a Caddyfile and runs it in real Caddy until the test ends. The caller
// holds caddyMu.
func loadCaddyfile(t *testing.T, text string) {
	t.Helper()
	if err := loadCaddyfileErr(text); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// loadCaddyfileErr adapts and loads a Caddyfile, reporting why it would not.
func loadCaddyfileErr(text string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		return fmt.Errorf("adapting: %w", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	return nil
}
