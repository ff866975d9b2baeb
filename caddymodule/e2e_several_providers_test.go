package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Several providers on one site: staff sign in at one provider, partners at another. Each
// provider has its own cookie, callback and states; a route naming both lets the browser
// choose.

const twoProviders = `	oidc_auth {
		provider staff {
			issuer $ISSUER
			client_id $CLIENT_ID
			client_secret $CLIENT_SECRET
			session_secret $SECRET
			cookie {
				insecure
			}
		}
		provider partners {
			issuer $PARTNERS
			client_id partners
			client_secret partners-secret
			session_secret $SECRET
			cookie {
				insecure
			}
		}
	}`

const twoProvidersSite = `
	handle /staff/* {
		oidc_auth {
			provider staff
		}
		reverse_proxy $UPSTREAM
	}
	handle {
		oidc_auth {
			provider staff partners
		}
		reverse_proxy $UPSTREAM
	}`

// newTwoProviderHarness runs the site against two development providers; the second
// (partners) signs its users in as partnerUser.
func newTwoProviderHarness(t *testing.T, partnerUser string) (*harness, *devidp.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + "/"
	h := newCaddyfileHarnessWithOptions(t, strings.ReplaceAll(twoProviders, "$PARTNERS", issuer), twoProvidersSite, nil)
	idp, err := devidp.New(devidp.Config{Issuer: issuer, Now: h.clock.Now, Clients: []devidp.Client{{
		ID: "partners", Secret: "partners-secret", RedirectURIs: []string{h.siteURL + "/oauth2/partners/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	srv.Start()
	t.Cleanup(srv.Close)
	idp.SetAutoLogin(partnerUser, "")
	return h, idp
}

func TestSeveralProvidersOnOneSite(t *testing.T) {
	t.Run("a browser without a session chooses where to sign in", func(t *testing.T) {
		h, _ := newTwoProviderHarness(t, "bob")
		res := h.noRedirectsGet("/projects?x=1")
		page := h.browse("/projects?x=1")
		if res.status != http.StatusOK || !strings.Contains(page.body, `href="/oauth2/staff/start?rd=%2Fprojects%3Fx%3D1" data-provider="staff"`) ||
			!strings.Contains(page.body, `href="/oauth2/partners/start?rd=%2Fprojects%3Fx%3D1" data-provider="partners"`) {
			t.Fatalf("the chooser: %d %.600s", res.status, page.body)
		}
		if res := h.api(http.MethodGet, "/projects"); res.status != http.StatusUnauthorized {
			t.Errorf("an API call without a session: %d, want 401", res.status)
		}
	})
	t.Run("each provider signs in its own users, and a route of one accepts only its sessions", func(t *testing.T) {
		h, _ := newTwoProviderHarness(t, "bob")
		e, ok := h.browse("/oauth2/partners/start?rd=/projects").echo()
		if !ok || e.Path != "/projects" || e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
			t.Fatalf("signing in at the partners' provider: %v", e)
		}
		if e, ok := h.browse("/projects/2").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
			t.Errorf("the partners' session on the shared route: %v", e)
		}
		if res := h.noRedirectsGet("/staff/area"); res.status != http.StatusFound ||
			!strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Errorf("a staff-only route with only a partners' session: %d to %q, want the staff provider's login",
				res.status, res.header.Get("Location"))
		}
		e, ok = h.browse("/staff/area").echo() // the staff provider signs alice in
		if !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
			t.Fatalf("signing in at the staff provider: %v", e)
		}
		if e, _ := h.browse("/projects/3").echo(); e.Headers.Get("X-Forwarded-User") == "" {
			t.Errorf("with both sessions the shared route lets the browser in: %v", e.Headers)
		}
	})
	t.Run("a response of one provider delivered to the other's callback signs no one in", func(t *testing.T) {
		h, _ := newTwoProviderHarness(t, "bob")
		res := h.noRedirectsGet("/oauth2/partners/start?rd=/")
		authorize, _ := url.Parse(res.header.Get("Location"))
		req, _ := http.NewRequest(http.MethodGet, authorize.String(), nil)
		resp, err := h.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		back, _ := url.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(back.Path, "/oauth2/partners/callback") {
			t.Fatalf("the partners' provider answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		mixed := h.noRedirectsGet("/oauth2/staff/callback?" + back.RawQuery)
		if mixed.status == http.StatusSeeOther {
			t.Fatalf("the staff callback took the partners' response: %d to %q", mixed.status, mixed.header.Get("Location"))
		}
		h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "unsolicited response"})
		if _, ok := h.lastEvent(evLogin); ok {
			t.Errorf("someone was signed in: %v", h.events())
		}
	})
	t.Run("an iss naming the other provider is refused", func(t *testing.T) {
		h, _ := newTwoProviderHarness(t, "bob")
		res := h.noRedirectsGet("/oauth2/staff/start?rd=/")
		authorize, _ := url.Parse(res.header.Get("Location"))
		state := authorize.Query().Get("state")
		got := h.browse("/oauth2/staff/callback?code=c&state=" + url.QueryEscape(state) + "&iss=" + url.QueryEscape("http://partners.example/"))
		if got.status != http.StatusBadRequest {
			t.Fatalf("%d", got.status)
		}
		h.impAudit(evLoginFailed, map[string]string{"reason": "iss parameter names another issuer"})
	})
}
