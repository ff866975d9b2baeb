package caddymodule

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// Operators can tell what is wrong: the page a person sees and the audit reason name the
// exact cause (issue 13, "Exact causes"), and nothing secret reaches either.

// observeLogs routes the running handlers' operator log (and their provider's) to the
// returned observer, before any request.
func (h *harness) observeLogs() *observer.ObservedLogs {
	core, logs := observer.New(zapcore.WarnLevel)
	l := zap.New(core)
	for _, p := range provisionedHandlers(h.t) {
		p.logger = l
		p.provider.cfg.logger = l
	}
	return logs
}

// pageText is a page's text as a person reads it: markup entities decoded.
func pageText(body string) string { return html.UnescapeString(body) }

// wantPage checks a response's status and that its text has every phrase.
func wantPage(t *testing.T, res result, status int, phrases ...string) {
	t.Helper()
	text := pageText(res.body)
	if res.status != status {
		t.Fatalf("status %d, want %d: %.600s", res.status, status, text)
	}
	for _, p := range phrases {
		if !strings.Contains(text, p) {
			t.Errorf("the page lacks %q: %.800s", p, text)
		}
	}
}

// wantReason checks the last audit event called name has exactly this reason.
func (h *harness) wantReason(name, reason string) {
	h.t.Helper()
	ev, ok := h.lastEvent(name)
	if !ok {
		h.t.Fatalf("no %s event; events %v", name, h.events())
	}
	if ev["reason"] != reason {
		h.t.Errorf("%s reason %q, want %q", name, ev["reason"], reason)
	}
}

func TestTheUnreachablePageSaysWhatFailed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		issuer func(h *harness) string // nil: the provider's own
		fault  devidp.Misbehaviour
		cause  string // on the page, in the audit reason and the log
		page   []string
	}{
		{name: "an issuer without its trailing '/'", issuer: func(h *harness) string { return strings.TrimSuffix(h.idpURL, "/") },
			cause: `issuer mismatch: configured "$BARE", the discovery document says "$ISSUER" (a trailing '/' differs)`},
		{name: "an issuer with an extra '/'", issuer: func(h *harness) string { return h.idpURL + "/" },
			cause: `issuer mismatch: configured "$ISSUER/", the discovery document says "$ISSUER" (a trailing '/' differs)`},
		{name: "https for an http provider", issuer: func(h *harness) string { return strings.Replace(h.idpURL, "http://", "https://", 1) },
			cause: "TLS error: the provider answered in plain HTTP (an https issuer for an http provider?)"},
		{name: "a certificate of an unknown authority", issuer: func(h *harness) string {
			srv := httptest.NewTLSServer(h.idpSrv.Config.Handler)
			h.t.Cleanup(srv.Close)
			return srv.URL + "/"
		}, cause: "TLS error: the provider's certificate is signed by an unknown authority"},
		{name: "nothing listening at the issuer", issuer: func(h *harness) string { return "http://127.0.0.1:" + freePortFor(h) + "/" },
			cause: "connection refused (127.0.0.1:$PORT)"},
		{name: "a discovery document naming another issuer", fault: devidp.DiscoveryWrongIssuer,
			cause: `issuer mismatch: configured "$ISSUER", the discovery document says "https://wrong-issuer.example/"`},
		{name: "discovery answering 500", fault: devidp.Discovery500,
			cause: "discovery answered HTTP 500 Internal Server Error at $ISSUER.well-known/openid-configuration"},
		{name: "discovery not answering", fault: devidp.DiscoverySlow,
			cause: "timeout: the provider did not answer in time"},
		{name: "a host that does not resolve", issuer: func(*harness) string { return "http://oidc-provider.invalid/" },
			cause: "DNS failure: oidc-provider.invalid not found"},
	} {
		t.Run(tc.name+": the 502 page, the audit reason and the log say so", func(t *testing.T) {
			var issuer, port string
			cfg := func(c *Handler) {
				if issuer != "" {
					c.Issuer = issuer
				}
			}
			h, p := startHarness(t, func(c *devidp.Config) {
				if tc.fault != "" {
					c.Misbehave = []devidp.Misbehaviour{tc.fault}
				}
			})
			if tc.issuer != nil {
				issuer = tc.issuer(h)
				if u, err := url.Parse(issuer); err == nil {
					port = u.Port()
				}
			}
			hc := h.handlerConfig(cfg)
			h.load(p, handlerJSON(t, "oidc_auth", &hc))
			shortenProviderTimeout(t, h)
			logs := h.observeLogs()

			cause := strings.NewReplacer("$BARE", strings.TrimSuffix(h.idpURL, "/"), "$ISSUER", h.idpURL,
				"$PORT", port).Replace(tc.cause)
			res := h.browse("/")
			// The page names the cause without the network's addresses and host names; the
			// audit reason and the log keep them.
			wantPage(t, res, http.StatusBadGateway, "The identity provider is unreachable right now.", "Discovery failed: "+forPage(cause)+".")
			if public := forPage(cause); public != cause && strings.Contains(res.body, cause) {
				t.Errorf("the page shows the provider's address: %q", cause)
			}
			h.wantReason(evLoginFailed, "provider unreachable: "+cause)
			found := false
			for _, e := range logs.FilterMessage("provider discovery failed").All() {
				found = found || e.ContextMap()["cause"] == cause
			}
			if !found {
				t.Errorf("no warning with the cause %q in the log: %v", cause, logs.All())
			}
			if h.upstream.count() != 0 {
				t.Errorf("the application was reached")
			}
		})
	}
}

// freePortFor is a port where nothing listens.
func freePortFor(h *harness) string { return freePort(h.t) }

func TestARefusedCodeExchangeSaysTheProvidersError(t *testing.T) {
	t.Run("a wrong client secret: invalid_client on the page, in the audit reason and the log, the secret nowhere", func(t *testing.T) {
		const wrong = "not-the-registered-secret"
		h := newHarness(t, func(c *Handler) { c.ClientSecret = wrong }, nil)
		logs := h.observeLogs()
		res := h.browse("/")
		wantPage(t, res, http.StatusBadRequest, "Sign-in was refused",
			"The identity provider refused the code exchange: invalid_client (check client_id, client_secret and client_auth_method).")
		h.wantReason(evLoginFailed, "code exchange refused: invalid_client: Client authentication failed.")
		warns := logs.FilterMessage("the provider refused the code exchange").All()
		if len(warns) != 1 || warns[0].Level != zapcore.WarnLevel || warns[0].ContextMap()["error"] != "invalid_client" {
			t.Fatalf("the log: %v", logs.All())
		}
		for _, text := range []string{res.body, warns[0].ContextMap()["error_description"].(string)} {
			if strings.Contains(text, wrong) || strings.Contains(text, testClientSecret) {
				t.Errorf("a client secret leaked: %.300s", text)
			}
		}
		h.impNoSecretsLogged(wrong, testClientSecret)
	})

	t.Run("a code redeemed with another redirect_uri than it was issued for: invalid_grant and the provider's words", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		logs := h.observeLogs()
		// The provider issues the code for a callback URL that is registered but not this
		// handler's; the code comes back to this handler, whose exchange names its own.
		_, authorize := h.startAttempt()
		u, _ := url.Parse(authorize)
		q := u.Query()
		q.Set("redirect_uri", h.siteURL+"/oauth2/staff/callback")
		u.RawQuery = q.Encode()
		back := h.impNavigate(u.String())
		cb, err := url.Parse(back.header.Get("Location"))
		if back.status != http.StatusFound || err != nil || cb.Query().Get("code") == "" {
			t.Fatalf("the provider's answer: %d to %q", back.status, back.header.Get("Location"))
		}
		cb.Path = "/oauth2/callback"
		res := h.browse(cb.String())
		wantPage(t, res, http.StatusBadRequest, "Sign-in was refused",
			"invalid_grant (the code expired or was used, or the callback URL is not the one registered at the provider).")
		h.wantReason(evLoginFailed, "code exchange refused: invalid_grant: The redirect_uri does not match the one of the authorization request.")
		if w := logs.FilterMessage("the provider refused the code exchange").All(); len(w) != 1 ||
			w[0].ContextMap()["redirect_uri"] != h.siteURL+"/oauth2/callback" {
			t.Errorf("the log: %v", logs.All())
		}
	})

	t.Run("a callback not registered at the provider: the provider refuses before any code, on its own page", func(t *testing.T) {
		h := newHarness(t, nil, func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"https://elsewhere.example/cb"} })
		res := h.browse("/")
		wantPage(t, res, http.StatusBadRequest, "Callback URL mismatch")
		if !strings.HasPrefix(res.url.String(), h.idpURL+"authorize?") {
			t.Errorf("the page is not the provider's: %s", res.url)
		}
		// The browser never comes back, so the module has nothing to record (RFC 6749
		// §4.1.2.1: a provider never redirects to an unregistered URI).
		h.impNoEvent(evLoginFailed)
	})
}

func TestClockSkewIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset time.Duration // the provider's clock, against this server's
		page   string
		reason string
	}{
		{"the provider's clock 11h behind: the ID token has expired", -11 * time.Hour,
			"The ID token does not verify: it has expired (check the clocks).",
			"ID token does not verify: expired at $EXP, 1h0m0s before this server's time (check the clocks)"},
		{"the provider's clock an hour ahead: the ID token is issued in the future", time.Hour,
			"The ID token was issued in the future (check the clocks).",
			"ID token issued in the future: iat 1h0m0s ahead of this server's time (check the clocks)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, nil)
			h.clock.t.Store(h.clock.Now().Truncate(time.Second).UnixNano())
			h.idp.SetNow(func() time.Time { return h.clock.Now().Add(tc.offset) })
			res := h.browse("/")
			wantPage(t, res, http.StatusBadRequest, "The sign-in response was not valid.", tc.page)
			exp := h.clock.Now().Add(tc.offset).Add(10 * time.Hour).UTC().Format(time.RFC3339)
			h.wantReason(evLoginFailed, strings.ReplaceAll(tc.reason, "$EXP", exp))
		})
	}
}

func TestAllowRulesSayWhyTheyRefuse(t *testing.T) {
	t.Run("an expression naming an absent claim: its evaluation error, not 'expression denied'", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Expression: `claims.group == "staff"`} }, nil)
		res := h.browse("/")
		wantPage(t, res, http.StatusForbidden, "Access denied", "this site does not admit your account")
		h.wantReason(evLoginFailed, "expression error: no such key: group")
	})
	t.Run("a false expression is still 'expression denied'", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Expression: `"admins" in claims.groups`} }, nil)
		wantPage(t, h.browse("/"), http.StatusForbidden, "Access denied")
		h.wantReason(evLoginFailed, "expression denied")
	})
	t.Run("groups when the provider sends no groups claim: 'groups claim absent', naming the claim", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Groups: []string{"staff"}} }, nil)
		h.idp.SetAutoLogin("mallory", "") // a user without groups: the provider sends no groups claim
		wantPage(t, h.browse("/"), http.StatusForbidden, "Access denied")
		h.wantReason(evLoginFailed, "groups claim absent (groups_claim groups)")
	})
	t.Run("groups read from a claim the provider does not send", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) {
			c.Allow = &AllowConfig{Groups: []string{"staff"}, GroupsClaim: "https://example.com/groups"}
		}, nil)
		wantPage(t, h.browse("/"), http.StatusForbidden, "Access denied")
		h.wantReason(evLoginFailed, "groups claim absent (groups_claim https://example.com/groups)")
	})
	t.Run("a user in other groups is 'not in an allowed group'", func(t *testing.T) {
		h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Groups: []string{"admins"}} }, nil)
		wantPage(t, h.browse("/"), http.StatusForbidden, "Access denied")
		h.wantReason(evLoginFailed, "not in an allowed group")
	})
	t.Run("a session refused on a stricter route says the same", func(t *testing.T) {
		h := newCaddyfileHarness(t, routesSite("allow {\n\t\t\tgroups admins\n\t\t}", "", ""), nil)
		h.login("mallory")
		if s := h.statusAt("/admin/panel"); s != http.StatusForbidden {
			t.Fatalf("mallory at /admin/: %d", s)
		}
		h.wantReason(evAccessDenied, "groups claim absent (groups_claim groups)")
	})
}

var switchAccountLink = regexp.MustCompile(`<a class="button secondary" id="switch-account" href="([^"]*)">Use another account</a>`)

func TestAccessDeniedOffersAnotherAccount(t *testing.T) {
	h := newHarness(t, func(c *Handler) { c.Allow = &AllowConfig{Emails: []string{"bob@example.com"}} }, nil)
	h.idp.SetAutoLogin("", "") // the provider asks who, and keeps a session of its own

	signInAs := func(user string) result {
		t.Helper()
		page := h.browse("/")
		action, form := impForm(t, page.body)
		if page.status != http.StatusOK || form.Get("tx") == "" {
			t.Fatalf("not the provider's sign-in page: %d at %s", page.status, page.url)
		}
		target, _ := page.url.Parse(action)
		form.Set("user", user)
		return h.postForm(target.String(), form)
	}

	denied := signInAs("alice")
	wantPage(t, denied, http.StatusForbidden, "Access denied", "Sign in again", "Use another account")
	h.wantReason(evLoginFailed, "email not allowed")
	m := switchAccountLink.FindStringSubmatch(denied.body)
	if m == nil {
		t.Fatalf("no 'Use another account' link: %.800s", denied.body)
	}

	t.Run("'Sign in again' alone comes back to the same 403 through the provider's session", func(t *testing.T) {
		res := h.browse("/oauth2/start?rd=%2F")
		wantPage(t, res, http.StatusForbidden, "Access denied")
	})

	t.Run("'Use another account' ends the provider's session too, so the provider asks who", func(t *testing.T) {
		res := h.browse(html.UnescapeString(m[1]), "Sec-Fetch-Site", "same-origin")
		if res.status != http.StatusOK || !strings.HasPrefix(res.url.String(), h.idpURL+"authorize?") || !strings.Contains(res.body, `name="tx"`) {
			t.Fatalf("after 'Use another account': %d at %s: %.300s", res.status, res.url, res.body)
		}
		action, form := impForm(t, res.body)
		target, _ := res.url.Parse(action)
		form.Set("user", "bob")
		e, ok := h.postForm(target.String(), form).echo()
		if !ok || e.Headers.Get("X-Forwarded-User") != "auth0|bob" {
			t.Fatalf("signing in as bob: %v", e.Headers)
		}
	})

	t.Run("the link from another site still only gets the question", func(t *testing.T) {
		res := h.browse(html.UnescapeString(m[1]), "Sec-Fetch-Site", "cross-site")
		wantPage(t, res, http.StatusOK, "Sign out of")
		if res.url.Host != strings.TrimPrefix(h.siteURL, "http://") {
			t.Errorf("a cross-site request was sent on to %s", res.url)
		}
	})
}

func TestHandleErrorsGetsTheSwitchAccountLink(t *testing.T) {
	site, c, _ := errorsSite(t, "allow {\n\t\t\temails nobody@example.com\n\t\t}", `handle_errors 403 {
		respond "{oidc_auth.error.code} {oidc_auth.error.reason} [{oidc_auth.error.switch_account}]" 403
	}`)
	status, body, _ := get(t, c, site+"/", "text/html")
	if want := "access_denied email not allowed [/oauth2/logout?rd=%2F]"; status != http.StatusForbidden || body != want {
		t.Fatalf("got %d %q, want 403 %q", status, body, want)
	}
}
