package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// robustHandler is a provisioned handler, with impersonation on and state signed (every
// endpoint exists), in front of a live development provider.
func robustHandler(t testing.TB) *Handler {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + "/"
	idp, err := devidp.New(devidp.Config{Issuer: issuer, Clients: []devidp.Client{{ID: "app", Secret: "s",
		RedirectURIs: []string{"http://site.example/oauth2/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	srv.Start()
	t.Cleanup(srv.Close)
	var h Handler
	h.Issuer, h.ClientID, h.ClientSecret = issuer, "app", "s"
	h.SessionSecrets = []string{testSecret}
	h.Cookie = &CookieConfig{Insecure: true}
	h.Impersonation = &ImpersonationConfig{State: "signed"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return &h
}

// serveCrafted sends one crafted request through the handler and fails on a panic or a 5xx
// other than 502 (the provider's failure).
func serveCrafted(t testing.TB, h *Handler, method, target, contentType, body, cookie string) {
	r := httptest.NewRequest(method, "http://site.example"+target, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s %s (cookie %.60q) panicked: %v", method, target, cookie, p)
		}
	}()
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("%s %s returned an error: %v", method, target, err)
	}
	if w.Code >= 500 && w.Code != http.StatusBadGateway {
		t.Fatalf("%s %.80s (cookie %.60q) answered %d", method, target, cookie, w.Code)
	}
}

var craftedRequests = []struct{ method, target, contentType, body, cookie string }{
	{"GET", "/oauth2/callback?code=x&state=" + strings.Repeat("A", 48), "", "", ""},
	{"GET", "/oauth2/callback?state=i.%00%ff&code=", "", "", ""},
	{"GET", "/oauth2/callback?error=%ff%fe&error_description=" + strings.Repeat("%e2%82", 200), "", "", ""},
	{"GET", "/oauth2/callback?code=a&code=b", "", "", ""},
	{"GET", "/oauth2/callback?%zz", "", "", ""},
	{"POST", "/oauth2/callback", "application/x-www-form-urlencoded", "id_token=a.b.c&access_token=x&expires_in=99999999999999999999", ""},
	{"POST", "/oauth2/callback", "application/x-www-form-urlencoded", "id_token=" + strings.Repeat("e", 20000), ""},
	{"POST", "/oauth2/callback", "multipart/form-data; boundary=x", "--x--", ""},
	{"POST", "/oauth2/callback", "application/x-www-form-urlencoded", strings.Repeat("a=b&", 40000), ""},
	{"POST", "/oauth2/confirm", "application/x-www-form-urlencoded", "token=x&decision=continue", "_oidc_auth_confirm=" + strings.Repeat("A", 100)},
	{"POST", "/oauth2/confirm", "application/x-www-form-urlencoded", "token=x", "_oidc_auth_confirm_0=AQ; _oidc_auth_confirm_1=%%"},
	{"POST", "/oauth2/impersonation/end?rd=//evil", "", "", "_oidc_auth_stash=garbage; _oidc_auth=\"\""},
	{"GET", "/oauth2/impersonation/state", "", "", "_oidc_auth_0=x; _oidc_auth_1=y"},
	{"GET", "/oauth2/userinfo", "", "", "_oidc_auth=" + strings.Repeat("A", 40000)},
	{"GET", "/oauth2/logout?rd=%0d%0aSet-Cookie:x", "", "", ""},
	{"GET", "/oauth2/start?rd=" + url.QueryEscape("/\\evil"), "", "", ""},
	{"GET", "/anything", "", "", "_oidc_auth=AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
}

func TestCraftedRequestsNeverPanicOrFailWith500(t *testing.T) {
	t.Parallel()
	h := robustHandler(t)
	for _, c := range craftedRequests {
		serveCrafted(t, h, c.method, c.target, c.contentType, c.body, c.cookie)
	}
}

func FuzzCallback(f *testing.F) {
	for _, c := range craftedRequests {
		f.Add(c.method, c.target, c.body, c.cookie)
	}
	h := robustHandler(f)
	f.Fuzz(func(t *testing.T, method, target, body, cookie string) {
		if method != "GET" && method != "POST" {
			method = "GET"
		}
		u, err := url.Parse(target)
		if err != nil || !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n#") || u.Host != "" {
			return // not a request line a server would accept
		}
		serveCrafted(t, h, method, target, "application/x-www-form-urlencoded", body, strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, cookie))
	})
}
