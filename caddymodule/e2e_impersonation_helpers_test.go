package caddymodule

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// End-to-end tests of impersonation: real Caddy, the development provider's impersonation API
// (POST /users/{id}/impersonate and its one-time links), the echoing upstream and the audit log.
// This file holds their helpers; the tests are in e2e_impersonation_*_test.go by topic.

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

// The identity headers of alice impersonated by admin. Auth0 vouches for no impersonator
// email, so the admin's comes only as unverified.
var aliceAsAdmin = map[string]string{
	"X-Forwarded-User":                          "auth0|alice",
	"X-Forwarded-Impersonated":                  "true",
	"X-Forwarded-Impersonator":                  "auth0|admin",
	"X-Forwarded-Impersonator-Email":            "",
	"X-Forwarded-Impersonator-Email-Unverified": "admin@example.com",
}

// The audit fields of alice impersonated by admin.
var aliceAsAdminEvent = map[string]string{
	"subject": "auth0|alice", "impersonator": "auth0|admin", "impersonator_email": "admin@example.com",
}

// withImpersonation configures an impersonation block.
func withImpersonation(imp *ImpersonationConfig) func(*Handler) {
	return func(c *Handler) { c.Impersonation = imp }
}

// impOtherBrowser is the same site seen from another browser, with its own cookie jar.
func (h *harness) impOtherBrowser() *harness {
	other := *h
	jar, _ := cookiejar.New(nil)
	other.client = &http.Client{Jar: jar, Timeout: h.client.Timeout}
	return &other
}

// impSession opens the browser's session cookie as the module does.
func (h *harness) impSession() *session.Session {
	h.t.Helper()
	site, _ := url.Parse(h.siteURL)
	req := httptest.NewRequest(http.MethodGet, h.siteURL+"/", nil)
	for _, c := range h.client.Jar.Cookies(site) {
		req.AddCookie(c)
	}
	s, rejected, _ := h.handler.readSealedSession(req, h.handler.jar.Base, session.PurposeSession)
	if s == nil {
		h.t.Fatalf("no session cookie that opens (%q): %v", rejected, h.cookieNames())
	}
	return s
}

// ownPost posts to path from the site's own page, without following the redirect.
func (h *harness) ownPost(path string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.siteURL+path, nil)
	req.Header.Set("Origin", h.siteURL)
	req.Header.Set("Accept", "text/html")
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// impEnd ends the impersonation from the site's own page, and does not follow the redirect
// (which, without a session, would start a fresh login).
func (h *harness) impEnd() {
	h.t.Helper()
	resp := h.ownPost("/oauth2/impersonation/end")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		h.t.Errorf("ending the impersonation: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
