package caddymodule

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// End-to-end tests of impersonation: real Caddy, the development provider's impersonation API
// (POST /users/{id}/impersonate and its one-time links), the echoing upstream and the audit log.

// impParams are the additionalParameters of an impersonation request.
type impParams struct {
	ResponseType string `json:"response_type,omitempty"`
	ResponseMode string `json:"response_mode,omitempty"`
	State        string `json:"state,omitempty"`
	Scope        string `json:"scope,omitempty"`
	CallbackURL  string `json:"callback_url,omitempty"`
}

// impLink asks the provider's impersonation API, as an administrator's tooling would, for a
// one-time link that signs a browser in as user (a demo user key), impersonated by impersonator.
func (h *harness) impLink(user, impersonator string, p impParams) string {
	h.t.Helper()
	body, err := json.Marshal(map[string]any{
		"protocol":             "oauth2",
		"impersonator_id":      "auth0|" + impersonator,
		"client_id":            testClientID,
		"additionalParameters": p,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, h.idpURL+"users/"+url.PathEscape("auth0|"+user)+"/impersonate", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("impersonation API: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), h.idpURL) {
		h.t.Fatalf("impersonation API: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// impCallback follows an impersonation link at the provider without following the provider's
// redirect, and returns where the provider sends the browser (the callback, with its
// parameters in the query or the fragment).
func (h *harness) impCallback(link string) *url.URL {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, link, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), h.siteURL+"/oauth2/callback") {
		h.t.Fatalf("following the link: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc
}

// impNavigate is a browser navigation that stops at the first response.
func (h *harness) impNavigate(target string) result {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
}

var (
	impFormAction  = regexp.MustCompile(`<form[^>]* method="post" action="([^"]*)"`)
	impHiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// impForm reads the action and hidden fields of the first form of a page.
func impForm(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := impFormAction.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in the page: %.400s", page)
	}
	fields := url.Values{}
	for _, f := range impHiddenInput.FindAllStringSubmatch(page, -1) {
		fields.Add(html.UnescapeString(f[1]), html.UnescapeString(f[2]))
	}
	return html.UnescapeString(m[1]), fields
}

// impSubmitFormPost submits the provider's auto-posting form (response_mode form_post) as the
// browser's script would: a cross-site POST to the callback.
func (h *harness) impSubmitFormPost(page result) result {
	h.t.Helper()
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="form_post"`) {
		h.t.Fatalf("not the provider's form post page: %d %.300s", page.status, page.body)
	}
	action, fields := impForm(h.t, page.body)
	if action != h.siteURL+"/oauth2/callback" {
		h.t.Fatalf("the form posts to %q", action)
	}
	return h.postForm(action, fields, "Origin", strings.TrimSuffix(h.idpURL, "/"))
}

// impRelayFragment completes a response in the URL fragment as a browser does: it loads the
// callback without the fragment (which browsers never send), checks the relay page, and
// posts the fragment's fields back as the page's script would.
func (h *harness) impRelayFragment(loc *url.URL) result {
	h.t.Helper()
	fields, err := url.ParseQuery(loc.EscapedFragment())
	if err != nil || fields.Get("access_token") == "" {
		h.t.Fatalf("no tokens in the fragment of %s", loc.Redacted())
	}
	bare := *loc
	bare.Fragment, bare.RawFragment = "", ""
	page := h.browse(bare.String())
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="relay"`) {
		h.t.Fatalf("the callback without parameters is not the relay page: %d %.300s", page.status, page.body)
	}
	csp := page.header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(page.body, `<script nonce="`+nonce[1]+`">`) {
		h.t.Errorf("the relay page's script is not bound to a CSP nonce: CSP %q", csp)
	}
	if strings.Contains(page.body, "<script src") || strings.Contains(csp, "http") || strings.Contains(csp, "*") ||
		strings.Contains(csp, "unsafe-inline") {
		h.t.Errorf("the relay page may run scripts from elsewhere: CSP %q", csp)
	}
	action, _ := impForm(h.t, page.body)
	fields.Set("relayed_fragment", "1")
	return h.postForm(action, fields, "Origin", h.siteURL)
}

// impConfirmToken reads the one-time token of the confirmation page.
func impConfirmToken(t *testing.T, page result) string {
	t.Helper()
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="continue"`) {
		t.Fatalf("not the confirmation page: %d at %s: %.400s", page.status, page.url, page.body)
	}
	_, fields := impForm(t, page.body)
	if fields.Get("token") == "" {
		t.Fatalf("the confirmation page carries no token")
	}
	return fields.Get("token")
}

// impDecide answers the confirmation page (Continue or Cancel), as the page's own form does.
func (h *harness) impDecide(token, decision string) result {
	h.t.Helper()
	return h.postForm("/oauth2/confirm", url.Values{"token": {token}, "decision": {decision}}, "Origin", h.siteURL)
}

// impConfirm continues at the confirmation page and returns what the upstream saw of the landing.
func (h *harness) impConfirm(page result) echoed {
	h.t.Helper()
	res := h.impDecide(impConfirmToken(h.t, page), "continue")
	e, ok := res.echo()
	if res.status != http.StatusOK || !ok {
		h.t.Fatalf("after Continue: %d at %s: %.300s", res.status, res.url, res.body)
	}
	return e
}

// impAudit checks the last audit event called name: each wanted field is equal (a reason
// contains the wanted text; "" wants none), and the event says when and where from.
func (h *harness) impAudit(name string, want map[string]string) {
	h.t.Helper()
	all := h.audit.FilterMessage(name).All()
	if len(all) == 0 {
		h.t.Errorf("no %s audit event; events: %v", name, h.events())
		return
	}
	ev := all[len(all)-1]
	f := ev.ContextMap()
	if ev.Time.IsZero() || f["host"] == "" || f["client_ip"] == "" || f["event"] != name {
		h.t.Errorf("%s event lacks time, host or client IP: %v", name, f)
	}
	for k, w := range want {
		got, _ := f[k].(string)
		if k == "reason" && w != "" && strings.Contains(got, w) {
			continue
		}
		if got != w {
			h.t.Errorf("%s event: %s = %q, want %q (event %v)", name, k, got, w, f)
		}
	}
}

// impNoEvent checks that no audit event called name was logged.
func (h *harness) impNoEvent(name string) {
	h.t.Helper()
	if n := h.audit.FilterMessage(name).Len(); n != 0 {
		h.t.Errorf("%d unexpected %s audit events: %v", n, name, h.events())
	}
}

// impNoSession checks that the browser is not signed in.
func (h *harness) impNoSession() {
	h.t.Helper()
	if res := h.api(http.MethodGet, "/oauth2/userinfo"); res.status != http.StatusUnauthorized {
		h.t.Errorf("the browser has a session: %d %s", res.status, res.body)
	}
}

// impUserinfo returns the module's /oauth2/userinfo answer.
func (h *harness) impUserinfo() map[string]any {
	h.t.Helper()
	res := h.api(http.MethodGet, "/oauth2/userinfo")
	var m map[string]any
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &m) != nil {
		h.t.Fatalf("userinfo: %d %s", res.status, res.body)
	}
	return m
}

// impNoSecretsLogged checks that no audit event carries any of the secrets.
func (h *harness) impNoSecretsLogged(secrets ...string) {
	h.t.Helper()
	for _, ev := range h.audit.All() {
		for k, v := range ev.ContextMap() {
			s, _ := v.(string)
			for _, secret := range secrets {
				if secret != "" && strings.Contains(s, secret) {
					h.t.Errorf("audit event %s logs a secret in %s", ev.Message, k)
				}
			}
		}
	}
}

// impWantHeaders checks the identity headers the upstream saw; "" wants the header absent.
func impWantHeaders(t *testing.T, e echoed, want map[string]string) {
	t.Helper()
	for name, w := range want {
		got := e.Headers.Values(name)
		if (w == "" && len(got) != 0) || (w != "" && (len(got) != 1 || got[0] != w)) {
			t.Errorf("upstream saw %s = %q, want %q", name, got, w)
		}
	}
}

// The identity headers of alice impersonated by admin.
var aliceAsAdmin = map[string]string{
	"X-Forwarded-User":               "auth0|alice",
	"X-Forwarded-Impersonated":       "true",
	"X-Forwarded-Impersonator":       "auth0|admin",
	"X-Forwarded-Impersonator-Email": "admin@example.com",
}

// The audit fields of alice impersonated by admin.
var aliceAsAdminEvent = map[string]string{
	"subject": "auth0|alice", "impersonator": "auth0|admin", "impersonator_email": "admin@example.com",
}

// withImpersonation configures an impersonation block.
func withImpersonation(imp *ImpersonationConfig) func(*Handler) {
	return func(c *Handler) { c.Impersonation = imp }
}

func TestImpersonationLinkResponseTypesAndModes(t *testing.T) {
	cases := []struct {
		name   string
		params impParams
		// deliver takes the browser from the link to our site's answer to the callback.
		deliver func(h *harness, link string) result
	}{
		{"a code in the query, with the link's state", impParams{ResponseType: "code", State: "from-the-admin-tool"},
			func(h *harness, link string) result { return h.browse(link) }},
		{"a code in a form post", impParams{ResponseType: "code", ResponseMode: "form_post", State: "st"},
			func(h *harness, link string) result { return h.impSubmitFormPost(h.browse(link)) }},
		{"tokens in a form post", impParams{ResponseType: "token", ResponseMode: "form_post"},
			func(h *harness, link string) result { return h.impSubmitFormPost(h.browse(link)) }},
		{"tokens in the fragment, relayed by the callback's page", impParams{ResponseType: "token"},
			func(h *harness, link string) result { return h.impRelayFragment(h.impCallback(link)) }},
	}
	for _, c := range cases {
		t.Run(c.name+" signs in as the user after confirmation", func(t *testing.T) {
			h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
			page := c.deliver(h, h.impLink("alice", "admin", c.params))
			h.impNoEvent(evImpersonationStarted) // not before the confirmation
			e := h.impConfirm(page)
			impWantHeaders(t, e, aliceAsAdmin)
			if e.Path != "/" {
				t.Errorf("landed on %q, want /", e.Path)
			}
			h.impAudit(evImpersonationConfirmed, aliceAsAdminEvent)
			h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
			if ui := h.impUserinfo(); ui["impersonated"] != true || ui["token_audience"] != "userinfo" {
				t.Errorf("userinfo: %v", ui)
			}
			h.impNoEvent(evUnsolicitedBounced)
			h.impNoEvent(evImpersonationDenied)
		})
	}
}

func TestImpersonationConfirmation(t *testing.T) {
	t.Run("the page names the target and the impersonator, escaped, and cannot be framed", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), func(c *devidp.Config) {
			c.Users = append(devidp.DemoUsers(),
				devidp.User{Key: "eve", ID: "auth0|eve", Email: `eve<b>bold</b>@example.com`, EmailVerified: true, Nickname: "eve"},
				devidp.User{Key: "root", ID: "auth0|root", Email: `root"&<script>alert(1)</script>@example.com`, EmailVerified: true, Admin: true})
		})
		page := h.browse(h.impLink("eve", "root", impParams{Scope: "openid email"}))
		impConfirmToken(t, page)
		for _, raw := range []string{"<b>bold</b>", "<script>alert(1)</script>", `root"&`} {
			if strings.Contains(page.body, raw) {
				t.Errorf("the page shows %q unescaped", raw)
			}
		}
		for _, escaped := range []string{
			`<strong id="target">eve&lt;b&gt;bold&lt;/b&gt;@example.com</strong>`,
			`<strong id="impersonator">root&#34;&amp;&lt;script&gt;alert(1)&lt;/script&gt;@example.com</strong>`,
			`<title>Confirm impersonation</title>`,
			`<strong>` + strings.TrimPrefix(h.siteURL, "http://") + `</strong>`,
		} {
			if !strings.Contains(page.body, escaped) {
				t.Errorf("the page lacks %s:\n%s", escaped, page.body)
			}
		}
		if got := page.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("X-Frame-Options %q", got)
		}
		if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q allows framing", csp)
		}
		if cc := page.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
		if res := h.browse("/oauth2/confirm"); res.status != http.StatusMethodNotAllowed {
			t.Errorf("GET /oauth2/confirm: %d", res.status)
		}
	})

	t.Run("a POST without the token is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.postForm("/oauth2/confirm", url.Values{"decision": {"continue"}}, "Origin", h.siteURL)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Impersonation not confirmed") {
			t.Errorf("%d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "token does not match",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
	})

	t.Run("a wrong token is refused, and the confirmation is gone", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		if res := h.impDecide(token+"x", "continue"); res.status != http.StatusBadRequest {
			t.Errorf("wrong token: %d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "token does not match",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		if res := h.impDecide(token, "continue"); res.status != http.StatusBadRequest {
			t.Errorf("the right token after a wrong guess: %d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "cookie missing"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoSession()
	})

	t.Run("a token from another origin is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.postForm("/oauth2/confirm", url.Values{"token": {token}, "decision": {"continue"}},
			"Origin", "https://evil.example")
		if res.status != http.StatusBadRequest {
			t.Errorf("%d", res.status)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "another origin"})
		h.impNoSession()
	})

	t.Run("Continue issues the session once; replaying the token is refused", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		page := h.browse(h.impLink("alice", "admin", impParams{}))
		site, _ := url.Parse(h.siteURL)
		var confirmCookie *http.Cookie
		for _, c := range h.client.Jar.Cookies(site) {
			if c.Name == "_oidc_auth_confirm" {
				confirmCookie = &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"}
			}
		}
		if confirmCookie == nil {
			t.Fatalf("no confirmation cookie: %v", h.cookieNames())
		}
		token := impConfirmToken(t, page)
		impWantHeaders(t, h.impConfirm(page), aliceAsAdmin)
		h.impAudit(evImpersonationConfirmed, aliceAsAdminEvent)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		if slices.Contains(h.cookieNames(), "_oidc_auth_confirm") {
			t.Error("the confirmation cookie outlived its use")
		}

		// Another browser that copied the cookie and the token replays them.
		other := h.impOtherBrowser()
		other.client.Jar.SetCookies(site, []*http.Cookie{confirmCookie})
		started := h.audit.FilterMessage(evImpersonationStarted).Len()
		if res := other.impDecide(token, "continue"); res.status != http.StatusBadRequest {
			t.Errorf("replayed confirmation: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "already used",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		if h.audit.FilterMessage(evImpersonationStarted).Len() != started {
			t.Error("the replayed confirmation started a session")
		}
		other.impNoSession()
	})

	t.Run("Cancel leaves no session", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
		token := impConfirmToken(t, h.browse(h.impLink("alice", "admin", impParams{})))
		res := h.impDecide(token, "cancel")
		if res.status != http.StatusOK || !strings.Contains(res.body, "Impersonation cancelled") {
			t.Errorf("cancel: %d %.200s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "cancelled",
			"subject": "auth0|alice", "impersonator": "auth0|admin"})
		h.impNoEvent(evImpersonationStarted)
		h.impNoEvent(evImpersonationConfirmed)
		h.impNoSession()
		if slices.Contains(h.cookieNames(), "_oidc_auth") {
			t.Errorf("a session cookie after Cancel: %v", h.cookieNames())
		}
	})

	t.Run("confirm false issues the session directly", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		res := h.browse(h.impLink("alice", "admin", impParams{}))
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
		h.impNoEvent(evImpersonationConfirmed)
	})
}

// impOtherBrowser is the same site seen from another browser, with its own cookie jar.
func (h *harness) impOtherBrowser() *harness {
	other := *h
	jar, _ := cookiejar.New(nil)
	other.client = &http.Client{Jar: jar, Timeout: h.client.Timeout}
	return &other
}

func TestImpersonationRefusedWithoutTheBlockIsBounced(t *testing.T) {
	h := newHarness(t, nil, nil)
	loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "from-the-admin-tool"}))
	res := h.impNavigate(loc.String())
	to, _ := url.Parse(res.header.Get("Location"))
	if res.status != http.StatusFound || !strings.HasPrefix(to.String(), h.idpURL+"authorize?") {
		t.Fatalf("the unsolicited response was not bounced to the provider: %d to %q", res.status, to)
	}
	if q := to.Query(); len(q.Get("state")) != stateLen || q.Get("nonce") == "" || q.Get("code_challenge") == "" {
		t.Errorf("the bounce is not an ordinary login: %s", to)
	}
	h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "impersonation is not enabled",
		"subject": "", "impersonator": ""})
	h.impNoEvent(evImpersonationStarted)
	h.impNoSecretsLogged(loc.Query().Get("code"))
	h.impNoSession()

	// The fresh login is the browser's own (alice, at the provider), never the impersonation.
	e, ok := h.browse(to.String()).echo()
	if !ok {
		t.Fatal("the fresh login did not land")
	}
	impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "false",
		"X-Forwarded-Impersonator": ""})
	h.impAudit(evLogin, map[string]string{"subject": "auth0|alice", "impersonator": ""})
}

func TestImpersonationRefusesANonImpersonatedUnsolicitedResponse(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Landing: "/home"}), nil)
	// An attacker's own ordinary code, obtained with a state of their choosing, delivered to
	// the victim's browser (login CSRF).
	h.idp.SetAutoLogin("bob", "")
	q := url.Values{"client_id": {testClientID}, "redirect_uri": {h.siteURL + "/oauth2/callback"},
		"response_type": {"code"}, "scope": {"openid profile email"}, "state": {"attacker-chosen-state"}}
	res := h.impNavigate(h.idpURL + "authorize?" + q.Encode())
	loc := res.header.Get("Location")
	if res.status != http.StatusFound || !strings.HasPrefix(loc, h.siteURL+"/oauth2/callback?code=") {
		t.Fatalf("crafting a code: %d %q", res.status, loc)
	}
	h.idp.SetAutoLogin("alice", "")

	res = h.impNavigate(loc)
	to, _ := url.Parse(res.header.Get("Location"))
	if res.status != http.StatusFound || !strings.HasPrefix(to.String(), h.idpURL+"authorize?") {
		t.Fatalf("not bounced: %d to %q %.200s", res.status, to, res.body)
	}
	h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "not impersonated", "subject": "auth0|bob",
		"impersonator": ""})
	h.impNoSession()
	e, ok := h.browse(to.String()).echo()
	if !ok || e.Path != "/home" {
		t.Fatalf("the fresh login did not land on /home: %v", e)
	}
	impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "false"})
}

func TestImpersonationPolicyRefusals(t *testing.T) {
	cases := []struct {
		name        string
		policy      *ImpersonationConfig
		user, imp   string
		scope       string
		reason      string
		allowedUser string // a control: this user, impersonated by admin, gets to the confirmation page
	}{
		{name: "an impersonator who is not on the list",
			policy: &ImpersonationConfig{Impersonators: []string{"admin@example.com"}},
			user:   "alice", imp: "mallory", reason: "impersonator not allowed", allowedUser: "alice"},
		{name: "a protected target, known by the email scope",
			policy: &ImpersonationConfig{Protect: []string{"ceo@example.com"}},
			user:   "carol", imp: "admin", scope: "openid email", reason: "target is protected", allowedUser: "alice"},
		{name: "a protected target, whose email the default scope does not reveal",
			policy: &ImpersonationConfig{Protect: []string{"ceo@example.com"}},
			user:   "carol", imp: "admin", reason: "protect", allowedUser: "alice"},
		{name: "a protected domain",
			policy: &ImpersonationConfig{Protect: []string{"EXAMPLE.com"}},
			user:   "bob", imp: "admin", scope: "openid profile email", reason: "target is protected"},
		{name: "an expression that says no",
			policy: &ImpersonationConfig{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`},
			user:   "alice", imp: "mallory", reason: "expression denied", allowedUser: "alice"},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused with 403", func(t *testing.T) {
			h := newHarness(t, withImpersonation(c.policy), nil)
			res := h.browse(h.impLink(c.user, c.imp, impParams{Scope: c.scope}))
			if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			if strings.Contains(res.body, `id="continue"`) {
				t.Error("a refused impersonation reached the confirmation page")
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": c.reason,
				"subject": "auth0|" + c.user, "impersonator": "auth0|" + c.imp})
			h.impNoEvent(evImpersonationStarted)
			h.impNoSession()
			if h.upstream.count() != 0 {
				t.Error("the upstream was reached")
			}
			if c.allowedUser != "" {
				impConfirmToken(t, h.browse(h.impLink(c.allowedUser, "admin", impParams{Scope: "openid email"})))
			}
		})
	}
}

func TestImpersonationStaleResponseIsRefused(t *testing.T) {
	t.Run("a code delivered after max_age", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{MaxAge: durationOf(2 * time.Minute)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
		h.clock.Advance(3 * time.Minute)
		res := h.browse(loc.String())
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "stale", "subject": "auth0|alice",
			"impersonator": "auth0|admin"})
		h.impNoSession()
	})
	t.Run("tokens relayed after max_age", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil) // default max_age 5m
		loc := h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))
		h.clock.Advance(5*time.Minute + time.Second)
		res := h.impRelayFragment(loc)
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "stale", "subject": "auth0|alice",
			"impersonator": "auth0|admin"})
		h.impNoSession()
	})
	t.Run("a response within max_age is accepted", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{MaxAge: durationOf(2 * time.Minute)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
		h.clock.Advance(time.Minute)
		impConfirmToken(t, h.browse(loc.String()))
	})
}

func TestImpersonationReplayIsRefused(t *testing.T) {
	t.Run("the same code delivered twice", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "s"}))
		if _, ok := h.browse(loc.String()).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		other := h.impOtherBrowser()
		res := other.browse(loc.String())
		if res.status != http.StatusForbidden {
			t.Fatalf("replay: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "replayed"})
		if res := h.browse(loc.String()); res.status != http.StatusForbidden {
			t.Errorf("replay in the same browser: %d", res.status)
		}
		if n := h.audit.FilterMessage(evImpersonationDenied).Len(); n != 2 {
			t.Errorf("%d refusals audited, want 2", n)
		}
		if n := h.audit.FilterMessage(evImpersonationStarted).Len(); n != 1 {
			t.Errorf("%d impersonations started, want 1", n)
		}
		other.impNoSession()
		h.impNoSecretsLogged(loc.Query().Get("code"))
	})
	t.Run("the same tokens posted twice", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))
		if _, ok := h.impRelayFragment(loc).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		other := h.impOtherBrowser()
		if res := other.impRelayFragment(loc); res.status != http.StatusForbidden {
			t.Fatalf("replay: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "replayed"})
		other.impNoSession()
		frag, _ := url.ParseQuery(loc.EscapedFragment())
		h.impNoSecretsLogged(frag.Get("access_token"), frag.Get("id_token"))
	})
}

func TestImpersonationStateFixed(t *testing.T) {
	const fixed = "fixed-state-value-0123456789"
	h := newHarness(t, withImpersonation(&ImpersonationConfig{State: "fixed", StateValue: fixed}), nil)
	for _, c := range []struct{ name, state string }{{"a wrong state", "fixed-state-value-0123456780"}, {"no state", ""}} {
		t.Run(c.name+" is refused", func(t *testing.T) {
			res := h.browse(h.impLink("alice", "admin", impParams{State: c.state}))
			if res.status != http.StatusForbidden {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "state does not match the fixed value"})
			h.impNoSession()
		})
	}
	t.Run("tokens, which never carry a state, are refused", func(t *testing.T) {
		res := h.impRelayFragment(h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"})))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "fixed value"})
	})
	t.Run("the fixed state is accepted", func(t *testing.T) {
		impWantHeaders(t, h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{State: fixed}))), aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
}

func TestImpersonationStateSigned(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{State: "signed"}), nil)
	mint := func(h *harness) string {
		t.Helper()
		res := h.api(http.MethodGet, "/oauth2/impersonation/state")
		var m struct {
			State     string `json:"state"`
			ExpiresAt int64  `json:"expires_at"`
		}
		if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &m) != nil || m.State == "" {
			t.Fatalf("minting a state: %d %s", res.status, res.body)
		}
		return m.State
	}

	t.Run("minting needs a session", func(t *testing.T) {
		if res := h.api(http.MethodGet, "/oauth2/impersonation/state"); res.status != http.StatusUnauthorized {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	h.login("admin")
	state := mint(h)
	t.Run("a state minted by the admin signs the admin's impersonation in", func(t *testing.T) {
		e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{State: state})))
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("the same state used twice is refused", func(t *testing.T) {
		res := h.browse(h.impLink("bob", "admin", impParams{State: state}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "signed state already used"})
	})
	t.Run("a state minted by one admin is refused for another", func(t *testing.T) {
		admin := h.impOtherBrowser()
		admin.login("admin")
		s := mint(admin)
		res := admin.browse(h.impLink("alice", "mallory", impParams{State: s}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "minted for another impersonator",
			"subject": "auth0|alice", "impersonator": "auth0|mallory"})
	})
	t.Run("an unsigned or forged state is refused", func(t *testing.T) {
		for _, s := range []string{"", "anything", "i." + base64.RawURLEncoding.EncodeToString(make([]byte, 44))} {
			res := h.impOtherBrowser().browse(h.impLink("alice", "admin", impParams{State: s}))
			if res.status != http.StatusForbidden {
				t.Errorf("state %q: %d", s, res.status)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "not a signed impersonation state"})
		}
	})
	t.Run("an expired signed state is refused", func(t *testing.T) {
		admin := h.impOtherBrowser()
		admin.login("admin")
		s := mint(admin)
		h.clock.Advance(signedStateTTL + time.Minute)
		res := admin.browse(h.impLink("alice", "admin", impParams{State: s}))
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "signed state expired"})
	})
}

func TestImpersonationBadMacLinkNeverReachesTheSite(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
	link := h.impLink("alice", "admin", impParams{})
	i := strings.LastIndex(link, ".") + 5 // a character inside the MAC
	flip := byte('A')
	if link[i] == 'A' {
		flip = 'B'
	}
	tampered := link[:i] + string(flip) + link[i+1:]
	res := h.browse(tampered)
	var answer struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if res.status != http.StatusUnauthorized || json.Unmarshal([]byte(res.body), &answer) != nil ||
		answer.Error != "access_denied" || answer.Description != "Impersonation - Bad mac" {
		t.Fatalf("tampered link: %d %s", res.status, res.body)
	}
	if !strings.HasPrefix(res.url.String(), h.idpURL) {
		t.Errorf("the browser left the provider: %s", res.url)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("the site saw a callback: %v", evs)
	}
	if h.upstream.count() != 0 {
		t.Error("the upstream was reached")
	}
	h.impNoSession()
	// The untampered link is still good: the tampered one did not use it up.
	impConfirmToken(t, h.browse(link))
}

// impWithPlaceholders is a harness route: the module in a subroute whose next handler copies
// the {http.auth.user.*} placeholders into X-Ph-* request headers, so the upstream shows them.
func impWithPlaceholders(t *testing.T, oidcAuth json.RawMessage) []json.RawMessage {
	copyPlaceholders := &headers.Handler{Request: &headers.HeaderOps{Set: http.Header{
		"X-Ph-User-Id":            {"{http.auth.user.id}"},
		"X-Ph-Impersonated":       {"{http.auth.user.impersonated}"},
		"X-Ph-Impersonator-Id":    {"{http.auth.user.impersonator.id}"},
		"X-Ph-Impersonator-Email": {"{http.auth.user.impersonator.email}"},
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

// impSession opens the browser's session cookie as the module does.
func (h *harness) impSession() *session.Session {
	h.t.Helper()
	site, _ := url.Parse(h.siteURL)
	req := httptest.NewRequest(http.MethodGet, h.siteURL+"/", nil)
	for _, c := range h.client.Jar.Cookies(site) {
		req.AddCookie(c)
	}
	s, rejected := h.handler.readSealedSession(req, h.handler.jar.Base, session.PurposeSession)
	if s == nil {
		h.t.Fatalf("no session cookie that opens (%q): %v", rejected, h.cookieNames())
	}
	return s
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
			"X-Ph-Impersonated": "true", "X-Ph-Impersonator-Id": "auth0|admin", "X-Ph-Impersonator-Email": "admin@example.com"})
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

// impSpoofing sends a request carrying forged impersonation headers in several spellings.
func (h *harness) impSpoofing(accept string) result {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/app", nil)
	req.Header.Set("Accept", accept)
	for name, v := range map[string]string{
		"X-Forwarded-Impersonator":       "spoofed-1",
		"X_Forwarded_Impersonator":       "spoofed-2",
		"x-forwarded-impersonator":       "spoofed-3",
		"x_forwarded_impersonator_email": "spoofed-4",
		"X-FORWARDED-IMPERSONATOR-EMAIL": "spoofed-5",
		"x-forwarded-impersonated":       "spoofed-6",
		"X_FORWARDED_IMPERSONATED":       "spoofed-7",
		"x_forwarded_user":               "spoofed-8",
	} {
		req.Header[name] = []string{v} // as written, not canonicalized
	}
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
}

// impNoSpoofUpstream checks that nothing forged reached the upstream.
func impNoSpoofUpstream(t *testing.T, e echoed) {
	t.Helper()
	for name, vals := range e.Headers {
		for _, v := range vals {
			if strings.Contains(v, "spoofed") {
				t.Errorf("a forged %s reached the upstream: %q", name, v)
			}
		}
	}
}

func TestImpersonationHeadersReachTheUpstreamAndForgedOnesNever(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)

	t.Run("unauthenticated requests with forged headers never reach the upstream", func(t *testing.T) {
		if res := h.impSpoofing("application/json"); res.status != http.StatusUnauthorized || strings.Contains(res.body, "spoofed") {
			t.Errorf("API call: %d %s", res.status, res.body)
		}
		if res := h.impSpoofing("text/html"); res.status != http.StatusFound ||
			!strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Errorf("navigation: %d to %q", res.status, res.header.Get("Location"))
		}
		if h.upstream.count() != 0 {
			t.Error("the upstream was reached")
		}
	})

	t.Run("a user's own session cannot claim an impersonator", func(t *testing.T) {
		own := h.impOtherBrowser()
		own.login("bob")
		res := own.impSpoofing("text/html")
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impNoSpoofUpstream(t, e)
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|bob", "X-Forwarded-Impersonated": "false",
			"X-Forwarded-Impersonator": "", "X-Forwarded-Impersonator-Email": ""})
	})

	t.Run("an impersonated session shows the impersonator, and forged values cannot change it", func(t *testing.T) {
		e, ok := h.browse(h.impLink("alice", "admin", impParams{})).echo()
		if !ok {
			t.Fatal("the impersonation did not sign in")
		}
		impWantHeaders(t, e, aliceAsAdmin)
		res := h.impSpoofing("text/html")
		if e, ok = res.echo(); !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impNoSpoofUpstream(t, e)
		impWantHeaders(t, e, aliceAsAdmin)
		if ui := h.impUserinfo(); ui["impersonated"] != true {
			t.Errorf("userinfo: %v", ui)
		} else if imp, _ := ui["impersonator"].(map[string]any); imp["id"] != "auth0|admin" || imp["email"] != "admin@example.com" {
			t.Errorf("userinfo impersonator: %v", ui["impersonator"])
		}
	})
}

// impEnd ends the impersonation from the site's own page, and does not follow the redirect
// (which, without a session, would start a fresh login).
func (h *harness) impEnd() {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.siteURL+"/oauth2/impersonation/end", nil)
	req.Header.Set("Origin", h.siteURL)
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		h.t.Errorf("ending the impersonation: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestImpersonationStashAndRestore(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
	impWantHeaders(t, h.login("admin"), map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false"})

	e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{})))
	impWantHeaders(t, e, aliceAsAdmin)
	h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	if !slices.Contains(h.cookieNames(), "_oidc_auth_stash") {
		t.Fatalf("the admin's own session was not stashed: %v", h.cookieNames())
	}
	e, _ = h.browse("/later").echo()
	impWantHeaders(t, e, aliceAsAdmin)

	t.Run("ending from another origin is refused", func(t *testing.T) {
		res := h.postForm("/oauth2/impersonation/end", nil, "Origin", "https://evil.example")
		if res.status != http.StatusForbidden {
			t.Errorf("%d", res.status)
		}
		h.impNoEvent(evImpersonationEnded)
		e, _ := h.browse("/").echo()
		impWantHeaders(t, e, aliceAsAdmin)
	})

	t.Run("ending restores the admin's own session", func(t *testing.T) {
		res := h.postForm("/oauth2/impersonation/end", nil, "Origin", h.siteURL)
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false",
			"X-Forwarded-Impersonator": ""})
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		if slices.Contains(h.cookieNames(), "_oidc_auth_stash") {
			t.Error("the stash outlived the impersonation")
		}
		e, _ = h.browse("/").echo()
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|admin", "X-Forwarded-Impersonated": "false"})
		if n := h.audit.FilterMessage(evLogin).Len(); n != 1 {
			t.Errorf("%d logins, want the admin's one", n)
		}
	})

	t.Run("without a stash, ending leaves no session", func(t *testing.T) {
		b := h.impOtherBrowser()
		impWantHeaders(t, b.impConfirm(b.browse(h.impLink("alice", "admin", impParams{}))), aliceAsAdmin)
		if slices.Contains(b.cookieNames(), "_oidc_auth_stash") {
			t.Error("a stash without an own session")
		}
		b.impEnd()
		h.impAudit(evImpersonationEnded, aliceAsAdminEvent)
		b.impNoSession()
	})

	t.Run("another user's session is not stashed", func(t *testing.T) {
		b := h.impOtherBrowser()
		b.login("bob")
		impWantHeaders(t, b.impConfirm(b.browse(h.impLink("alice", "admin", impParams{}))), aliceAsAdmin)
		if slices.Contains(b.cookieNames(), "_oidc_auth_stash") {
			t.Error("bob's session was stashed for admin's impersonation")
		}
		b.impEnd()
		b.impNoSession()
	})
}

func TestImpersonationSessionLifetime(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Lifetime: durationOf(30 * time.Minute)}), nil)
	if e, ok := h.browse(h.impLink("alice", "admin", impParams{})).echo(); !ok {
		t.Fatal("the impersonation did not sign in")
	} else {
		impWantHeaders(t, e, aliceAsAdmin)
	}
	if exp, _ := h.impUserinfo()["expires_at"].(float64); time.Unix(int64(exp), 0).After(h.clock.Now().Add(30 * time.Minute)) {
		t.Errorf("the impersonated session expires at %v, after its 30m lifetime", time.Unix(int64(exp), 0))
	}
	h.clock.Advance(29 * time.Minute)
	if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("X-Forwarded-User") != "auth0|alice" {
		t.Fatal("the session ended before its lifetime")
	}
	h.clock.Advance(2 * time.Minute)
	if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
		t.Errorf("after its lifetime: %d %.200s", res.status, res.body)
	}
	h.impAudit(evSessionRejected, map[string]string{"reason": "expired"})
	if res := h.impNavigate(h.siteURL + "/app"); res.status != http.StatusFound ||
		!strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
		t.Errorf("a navigation after the lifetime: %d to %q", res.status, res.header.Get("Location"))
	}
}

func TestImpersonationSessionEndsWithItsToken(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false), Lifetime: durationOf(time.Hour)}),
		func(c *devidp.Config) { c.AccessTokenTTL = 10 * time.Minute })
	if _, ok := h.impRelayFragment(h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))).echo(); !ok {
		t.Fatal("the impersonation did not sign in")
	}
	h.clock.Advance(9 * time.Minute)
	if e, ok := h.browse("/").echo(); !ok || e.Headers.Get("X-Forwarded-Impersonator") != "auth0|admin" {
		t.Fatal("the session ended before its token")
	}
	h.clock.Advance(2 * time.Minute)
	if res := h.api(http.MethodGet, "/app"); res.status != http.StatusUnauthorized {
		t.Errorf("after the token's expiry: %d", res.status)
	}
	h.impAudit(evSessionRejected, map[string]string{"reason": "expired"})
}

func TestImpersonationInSolicitedLogins(t *testing.T) {
	modes := []struct {
		mode     devidp.Mode
		claims   string
		impEmail string // what the mode tells of the impersonator's email
	}{
		{devidp.ModeKeycloak, "keycloak", ""},
		{devidp.ModeAct, "act", ""},
		{devidp.ModeAuth0, "auth0", "admin@example.com"},
	}
	for _, m := range modes {
		idpMode := func(c *devidp.Config) { c.Mode = m.mode }
		t.Run(string(m.mode)+" style is refused with 403 without an impersonation block", func(t *testing.T) {
			h := newHarness(t, nil, idpMode)
			h.idp.SetAutoLogin("alice", "admin")
			res := h.browse("/")
			if res.status != http.StatusForbidden || !strings.Contains(res.body, "Impersonation refused") {
				t.Fatalf("%d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "impersonation is not enabled",
				"subject": "auth0|alice", "impersonator": "auth0|admin"})
			h.impNoEvent(evLogin)
			h.impNoSession()
			if h.upstream.count() != 0 {
				t.Error("the upstream was reached")
			}
		})
		for _, claims := range []string{"auto", m.claims} {
			t.Run(string(m.mode)+" style is accepted with the block (claims "+claims+")", func(t *testing.T) {
				h := newHarness(t, withImpersonation(&ImpersonationConfig{Claims: claims}), idpMode)
				h.idp.SetAutoLogin("alice", "admin")
				res := h.browse("/")
				e, ok := res.echo()
				if !ok {
					t.Fatalf("%d %.300s", res.status, res.body)
				}
				impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "true",
					"X-Forwarded-Impersonator": "auth0|admin", "X-Forwarded-Impersonator-Email": m.impEmail})
				h.impAudit(evImpersonationStarted, map[string]string{"subject": "auth0|alice",
					"impersonator": "auth0|admin", "impersonator_email": m.impEmail})
				h.impNoEvent(evLogin)
				h.impNoEvent(evImpersonationConfirmed)
			})
		}
		t.Run(string(m.mode)+" style is subject to the policy", func(t *testing.T) {
			h := newHarness(t, withImpersonation(&ImpersonationConfig{Impersonators: []string{"auth0|admin"},
				Protect: []string{"auth0|carol"}}), idpMode)
			h.idp.SetAutoLogin("alice", "mallory")
			if res := h.browse("/"); res.status != http.StatusForbidden {
				t.Fatalf("mallory: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "impersonator not allowed",
				"subject": "auth0|alice", "impersonator": "auth0|mallory"})
			h.idp.SetAutoLogin("carol", "admin")
			if res := h.browse("/"); res.status != http.StatusForbidden {
				t.Fatalf("carol: %d %.300s", res.status, res.body)
			}
			h.impAudit(evImpersonationDenied, map[string]string{"reason": "target is protected",
				"subject": "auth0|carol", "impersonator": "auth0|admin"})
			h.impNoSession()
		})
	}
}

// impIDTokenOnlyProvider puts the development provider behind a proxy that removes the
// impersonation claims from /userinfo, like an Auth0 tenant that reports impersonation only
// through namespaced ID token claims added by an Action. It returns the proxy's issuer URL
// and the hook that wires the harness's provider behind it.
func impIDTokenOnlyProvider(t *testing.T) (issuer string, wire func(*devidp.Server)) {
	var idp atomic.Pointer[devidp.Server]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := idp.Load()
		if s == nil {
			http.Error(w, "not wired", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/userinfo" {
			s.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		var c map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &c) != nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		delete(c, "impersonated")
		delete(c, "impersonator")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/", idp.Store
}

func TestImpersonationNamespacedIDTokenClaims(t *testing.T) {
	const ns = "https://example.com/"
	setup := func(t *testing.T, imp *ImpersonationConfig) *harness {
		issuer, wire := impIDTokenOnlyProvider(t)
		h := newHarness(t, func(c *Handler) {
			c.Issuer = issuer
			c.Impersonation = imp
		}, func(c *devidp.Config) {
			c.Issuer = issuer
			c.Namespace = ns
		})
		wire(h.idp)
		h.idpURL = issuer
		return h
	}

	t.Run("an unsolicited response is recognised by the namespaced ID token claims", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{Namespace: ns})
		e := h.impConfirm(h.browse(h.impLink("alice", "admin", impParams{})))
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("a solicited login is recognised by them too", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{Namespace: ns, Claims: "auth0"})
		h.idp.SetAutoLogin("alice", "admin")
		res := h.browse("/")
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		impWantHeaders(t, e, aliceAsAdmin)
		h.impAudit(evImpersonationStarted, aliceAsAdminEvent)
	})
	t.Run("without the module's namespace the unsolicited response is not trusted", func(t *testing.T) {
		h := setup(t, &ImpersonationConfig{})
		res := h.impNavigate(h.impCallback(h.impLink("alice", "admin", impParams{})).String())
		if res.status != http.StatusFound || !strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Fatalf("%d to %q", res.status, res.header.Get("Location"))
		}
		h.impAudit(evUnsolicitedBounced, map[string]string{"reason": "not impersonated", "subject": "auth0|alice"})
		h.impNoSession()
	})
}
