package caddymodule

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The conformance tests run the ordinary login against an OpenID provider we did not write:
// the example OP of github.com/zitadel/oidc (its storage, its login UI, its protocol code),
// in-process on a loopback httptest server, in front of real Caddy and the echoing upstream.

const (
	zitadelClientID     = "caddy-oidc-auth"
	zitadelClientSecret = "zitadel-client-secret"
	// The example user store's second user; its subject is its store ID.
	zitadelUsername = "test-user2"
	zitadelPassword = "verysecure"
	zitadelSubject  = "id2"
	zitadelEmail    = "test-user2@zitadel.ch"
)

// zitadelStorage is the example storage with one addition: the example's Client type cannot
// register post-logout redirect URIs (its PostLogoutRedirectURIs is always empty), and the OP
// refuses an end_session request naming an unregistered one, so clients are wrapped to list ours.
type zitadelStorage struct {
	*storage.Storage
	postLogout []string
}

func (s *zitadelStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return postLogoutClient{c, s.postLogout}, nil
}

type postLogoutClient struct {
	op.Client
	uris []string
}

func (c postLogoutClient) PostLogoutRedirectURIs() []string { return c.uris }

// newZitadelHarness starts the zitadel example OP with a confidential web client for the
// site (client_secret_basic, code flow, redirect URI /oauth2/callback), then Caddy with the
// module pointed at it. Only harness methods that do not touch the development provider apply.
func newZitadelHarness(t *testing.T) (h *harness, opURL string) {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)

	h = &harness{t: t, clock: new(testClock)}
	h.clock.t.Store(time.Now().UnixNano()) // the OP stamps tokens with the real clock
	port := freePort(t)
	h.siteURL = "http://127.0.0.1:" + port

	opSrv := httptest.NewUnstartedServer(nil)
	opURL = "http://" + opSrv.Listener.Addr().String()
	issuer := opURL + "/"
	clients := map[string]*storage.Client{
		zitadelClientID: storage.WebClient(zitadelClientID, zitadelClientSecret, h.siteURL+"/oauth2/callback"),
	}
	store := &zitadelStorage{
		Storage:    storage.NewStorageWithClients(storage.NewUserStore(issuer), clients),
		postLogout: []string{h.siteURL + "/"},
	}
	// A nil logger: SetupServer would otherwise replace the process-wide slog default.
	opSrv.Config.Handler = exampleop.SetupServer(issuer, store, nil, false)
	opSrv.Start()
	t.Cleanup(opSrv.Close)

	h.upstream = newEchoUpstream(t)
	h.load(port, handlerJSON(t, "oidc_auth", &Handler{
		Issuer:         issuer,
		ClientID:       zitadelClientID,
		ClientSecret:   zitadelClientSecret,
		SessionSecrets: []string{testSecret},
		Cookie:         &CookieConfig{Insecure: true},
	}))
	jar, _ := cookiejar.New(nil)
	h.client = &http.Client{Jar: jar, Timeout: 20 * time.Second}
	return h, opURL
}

// loginForm finds the example OP's username/password form: its action and hidden request id.
var (
	loginFormAction = regexp.MustCompile(`<form method="POST" action="([^"]+)"`)
	loginFormID     = regexp.MustCompile(`<input type="hidden" name="id" value="([^"]*)">`)
)

func TestConformanceZitadelOrdinaryLogin(t *testing.T) {
	h, opURL := newZitadelHarness(t)

	var discovery struct {
		Authorization string `json:"authorization_endpoint"`
		EndSession    string `json:"end_session_endpoint"`
	}
	res := h.do(mustRequest(t, http.MethodGet, opURL+"/.well-known/openid-configuration"))
	if err := json.Unmarshal([]byte(res.body), &discovery); err != nil || discovery.EndSession == "" {
		t.Fatalf("OP discovery: %d %.300s", res.status, res.body)
	}

	// The module sends a browser navigation to the OP's authorization endpoint.
	req := mustRequest(t, http.MethodGet, h.siteURL+"/app/page?x=1")
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("unauthenticated navigation: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	t.Run("the authorization request carries state, nonce and PKCE S256", func(t *testing.T) {
		if got := authURL.Scheme + "://" + authURL.Host + authURL.Path; got != discovery.Authorization {
			t.Errorf("redirected to %s, want the OP's authorization_endpoint %s", got, discovery.Authorization)
		}
		q := authURL.Query()
		for name, want := range map[string]string{
			"response_type":         "code",
			"client_id":             zitadelClientID,
			"redirect_uri":          h.siteURL + "/oauth2/callback",
			"code_challenge_method": "S256",
		} {
			if got := q.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if scopes := strings.Fields(q.Get("scope")); !slices.Contains(scopes, "openid") {
			t.Errorf("scope %q lacks openid", q.Get("scope"))
		}
		// A S256 challenge is the unpadded base64url of a SHA-256: 43 characters.
		if len(q.Get("code_challenge")) != 43 {
			t.Errorf("code_challenge %q is not an S256 challenge", q.Get("code_challenge"))
		}
		if q.Get("state") == "" || q.Get("nonce") == "" {
			t.Errorf("state %q, nonce %q: want both", q.Get("state"), q.Get("nonce"))
		}
	})

	// The OP sends the browser to its login UI; the user signs in with the example's form.
	res = h.do(mustRequest(t, http.MethodGet, authURL.String()))
	action, id := loginFormAction.FindStringSubmatch(res.body), loginFormID.FindStringSubmatch(res.body)
	if res.status != http.StatusOK || action == nil || id == nil || id[1] == "" {
		t.Fatalf("OP login page: %d at %s, body %.500s", res.status, res.url, res.body)
	}
	formURL, err := res.url.Parse(html.UnescapeString(action[1]))
	if err != nil {
		t.Fatal(err)
	}
	res = h.postForm(formURL.String(), url.Values{
		"id":       {html.UnescapeString(id[1])},
		"username": {zitadelUsername},
		"password": {zitadelPassword},
	})

	t.Run("the callback completes and the upstream sees the OP's user", func(t *testing.T) {
		e, ok := res.echo()
		if res.status != http.StatusOK || !ok {
			t.Fatalf("after the OP login: %d at %s, body %.500s; audit %v", res.status, res.url, res.body, h.events())
		}
		if e.Path != "/app/page?x=1" {
			t.Errorf("landed on %q, want the page that started the login", e.Path)
		}
		for header, want := range map[string]string{
			"X-Forwarded-User":               zitadelSubject,
			"X-Forwarded-Email":              zitadelEmail,
			"X-Forwarded-Preferred-Username": zitadelUsername,
			"X-Forwarded-Impersonated":       "false",
		} {
			if got := e.Headers.Get(header); got != want {
				t.Errorf("upstream saw %s = %q, want %q", header, got, want)
			}
		}
		if ev, ok := h.lastEvent(evLogin); !ok || ev["subject"] != zitadelSubject {
			t.Errorf("no login audit event for %s: %v", zitadelSubject, h.events())
		}
	})

	t.Run("the session cookie serves a second request without the OP", func(t *testing.T) {
		hits := h.upstream.count()
		res := h.browse("/again")
		e, ok := res.echo()
		if res.status != http.StatusOK || !ok || res.url.Host != strings.TrimPrefix(h.siteURL, "http://") {
			t.Fatalf("second request: %d at %s, body %.300s", res.status, res.url, res.body)
		}
		if got := e.Headers.Get("X-Forwarded-User"); got != zitadelSubject {
			t.Errorf("second request: upstream saw X-Forwarded-User %q, want %q", got, zitadelSubject)
		}
		if h.upstream.count() != hits+1 {
			t.Errorf("upstream hits went from %d to %d, want one more", hits, h.upstream.count())
		}
	})

	t.Run("logout sends the browser to the OP's end_session_endpoint", func(t *testing.T) {
		req := mustRequest(t, http.MethodGet, h.siteURL+"/oauth2/logout")
		req.Header.Set("Accept", "text/html")
		resp, err := h.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		out, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if got := out.Scheme + "://" + out.Host + out.Path; got != discovery.EndSession {
			t.Errorf("logout went to %s, want the OP's end_session_endpoint %s", got, discovery.EndSession)
		}
		if got := out.Query().Get("client_id"); got != zitadelClientID {
			t.Errorf("client_id = %q, want %q", got, zitadelClientID)
		}
		if got := out.Query().Get("post_logout_redirect_uri"); got != h.siteURL+"/" {
			t.Errorf("post_logout_redirect_uri = %q, want %q", got, h.siteURL+"/")
		}

		// The OP accepts the request and sends the browser back to the site, which no longer
		// has a session and so starts a new login: the browser ends on the OP's login page.
		req = mustRequest(t, http.MethodGet, out.String())
		req.Header.Set("Accept", "text/html")
		res := h.do(req)
		if res.status != http.StatusOK || !strings.HasPrefix(res.url.String(), opURL+"/login/") {
			t.Errorf("after the OP's end_session: %d at %s, body %.300s", res.status, res.url, res.body)
		}
		if res := h.api(http.MethodGet, "/oauth2/userinfo"); res.status != http.StatusUnauthorized {
			t.Errorf("userinfo after logout: %d %s, want 401", res.status, res.body)
		}
		if ev, ok := h.lastEvent(evLogout); !ok || ev["subject"] != zitadelSubject {
			t.Errorf("no logout audit event for %s: %v", zitadelSubject, h.events())
		}
	})
}

func mustRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
