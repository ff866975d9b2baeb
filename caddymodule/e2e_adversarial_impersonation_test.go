package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Impersonation: every refusal of an unsolicited (and a solicited) impersonated sign-in, the
// state policies, the confirmation page's defences against login CSRF, and what a stash
// cookie can and cannot bring back.

// advLink delivers an impersonation link of user by impersonator: the code to the callback,
// or, with p.ResponseType "token", the fragment's tokens as the relay page posts them.
func advLink(user, impersonator string, p impParams) advAttack {
	return func(h *harness, mark func()) result {
		loc := h.impCallback(h.impLink(user, impersonator, p))
		mark()
		if p.ResponseType == "token" {
			return h.impRelayFragment(loc)
		}
		return h.advSend(advReq{path: strings.TrimPrefix(loc.String(), h.siteURL)})
	}
}

// advMintState signs the browser in as admin and mints a signed state there.
func (h *harness) advMintState() string {
	h.t.Helper()
	h.login("admin")
	res := h.api(http.MethodGet, "/oauth2/impersonation/state")
	var m struct {
		State string `json:"state"`
	}
	if res.status != http.StatusOK || json.Unmarshal([]byte(res.body), &m) != nil || m.State == "" {
		h.t.Fatalf("minting a state: %d %s", res.status, res.body)
	}
	return m.State
}

// advSigned delivers a code of alice impersonated by impersonator, whose state is a state
// admin minted, after the clock moved by wait.
func advSigned(impersonator string, wait time.Duration) advAttack {
	return func(h *harness, mark func()) result {
		state := h.advMintState()
		h.clock.Advance(wait)
		return advLink("alice", impersonator, impParams{State: state})(h, mark)
	}
}

func TestAdversarialImpersonationRefusals(t *testing.T) {
	denied := func(reason string) advWant {
		return advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: reason}
	}
	started := advWant{status: http.StatusSeeOther, events: evImpersonationStarted}
	imp := func(name string, c ImpersonationConfig) advSite {
		if c.Confirm == nil {
			c.Confirm = boolPtr(false)
		}
		return advSite{name: name, cfg: advImp(c)}
	}
	var (
		keycloakOff = advSite{name: "a Keycloak provider, impersonation off",
			idp: func(c *devidp.Config) { c.Mode = devidp.ModeKeycloak }}
		keycloakAdmins = advSite{name: "a Keycloak provider, only the admin impersonates, the CEO protected",
			cfg: advImp(ImpersonationConfig{Impersonators: []string{"auth0|admin"}, Protect: []string{"ceo@example.com"}}),
			idp: func(c *devidp.Config) { c.Mode = devidp.ModeKeycloak }}
		admins  = imp("only the admin impersonates", ImpersonationConfig{Impersonators: []string{"auth0|admin"}})
		byEmail = imp("the admin listed by email", ImpersonationConfig{Impersonators: []string{"admin@example.com"}})
		protect = imp("the CEO, bob and example.net protected", ImpersonationConfig{Protect: []string{"ceo@example.com", "auth0|bob", "example.net"}})
		expr    = imp("an expression admitting the admin", ImpersonationConfig{Expression: `impersonator.id == "auth0|admin"`})
		trusted = advSite{name: "kate listed by email, impersonator emails trusted",
			cfg: advImp(ImpersonationConfig{Confirm: boolPtr(false), TrustImpersonatorEmail: true, Impersonators: []string{"kate@example.com"}}),
			idp: func(c *devidp.Config) {
				c.Users = append(devidp.DemoUsers(),
					devidp.User{Key: "kate", ID: "auth0|kate", Email: "KATE@example.com", EmailVerified: true, Admin: true},
					devidp.User{Key: "kelvin", ID: "auth0|kelvin", Email: "\u212aate@example.com", EmailVerified: true, Admin: true})
			}}
		staff = advSite{name: "staff only", cfg: func(c *Handler) {
			advImp(ImpersonationConfig{Confirm: boolPtr(false)})(c)
			c.Allow = &AllowConfig{Groups: []string{"staff"}}
		}}
		maxAge   = imp("max_age 2m", ImpersonationConfig{MaxAge: durationOf(2 * time.Minute)})
		fixed    = imp("state fixed", ImpersonationConfig{State: "fixed", StateValue: "fixed-state-value-0123456789"})
		signed   = imp("state signed", ImpersonationConfig{State: "signed"})
		signedTo = imp("state signed, only the admin impersonates", ImpersonationConfig{State: "signed", Impersonators: []string{"auth0|admin"}})
	)
	code := impParams{Scope: "openid profile email"}
	runAdvTokenCases(t, []advTokenCase{
		{name: "a code without an impersonation block is bounced", site: advPlainSite, attack: advLink("alice", "admin", code),
			want: advWant{status: http.StatusFound, events: evUnsolicitedBounced, reason: "impersonation is not enabled"}},
		{name: "posted tokens without an impersonation block are bounced", site: advPlainSite,
			attack: advLink("alice", "admin", impParams{ResponseType: "token"}),
			want:   advWant{status: http.StatusOK, events: evUnsolicitedBounced, reason: "impersonation is not enabled"}},
		{name: "a solicited impersonated login without an impersonation block", site: keycloakOff,
			attack: advOrdinaryAs("alice", "admin"),
			want:   denied("impersonation is not enabled")},
		{name: "a solicited impersonated login by an impersonator not on the list", site: keycloakAdmins,
			attack: advOrdinaryAs("alice", "mallory"),
			want:   denied("impersonator not allowed")},
		{name: "a solicited impersonated login of a protected target", site: keycloakAdmins,
			attack: advOrdinaryAs("carol", "admin"),
			want:   denied("target is protected")},
		{name: "a solicited impersonated login allowed by the policy (control)", site: keycloakAdmins,
			attack: advOrdinaryAs("alice", "admin"),
			want:   started},
		{name: "an impersonator not on the list", site: admins, attack: advLink("alice", "mallory", code),
			want: denied("impersonator not allowed")},
		{name: "the impersonator on the list (control)", site: admins, attack: advLink("alice", "admin", code), want: started},
		{name: "an impersonator listed by an email the provider does not vouch for", site: byEmail,
			attack: advLink("alice", "admin", code), want: denied("impersonator not allowed")},
		{name: "an impersonator listed by email, in another case (control)", site: trusted,
			attack: advLink("alice", "kate", code), want: started},
		{name: "an impersonator whose email is a Unicode lookalike of a listed one (Kelvin sign)", site: trusted,
			attack: advLink("alice", "kelvin", code), want: denied("impersonator not allowed")},
		{name: "a target protected by email", site: protect, attack: advLink("carol", "admin", code),
			want: denied("target is protected")},
		{name: "a target protected by sub", site: protect, attack: advLink("bob", "admin", code),
			want: denied("target is protected")},
		{name: "a target protected by domain", site: protect, attack: advLink("mallory", "admin", code),
			want: denied("target is protected")},
		{name: "a target whose email the scope hides, with emails protected", site: protect,
			attack: advLink("carol", "admin", impParams{}), want: denied("protect")},
		{name: "a target that is not protected (control)", site: protect, attack: advLink("alice", "admin", code), want: started},
		{name: "an expression that says no", site: expr, attack: advLink("alice", "mallory", code), want: denied("expression denied")},
		{name: "a target the allow rules do not admit", site: staff, attack: advLink("carol", "admin", code),
			want: denied("target not admitted")},
		{name: "a response older than max_age",
			site: maxAge,
			attack: func(h *harness, mark func()) result {
				loc := h.impCallback(h.impLink("alice", "admin", code))
				h.clock.Advance(3 * time.Minute)
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(loc.String(), h.siteURL)})
			},
			want: denied("stale")},
		{name: "a response without an ID token (no openid scope)", attack: advLink("alice", "admin", impParams{Scope: "profile"}),
			want: denied("no ID token")},
		{name: "an iss parameter naming another issuer",
			attack: func(h *harness, mark func()) result {
				loc := h.impCallback(h.impLink("alice", "admin", code))
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(loc.String(), h.siteURL) + "&iss=" + url.QueryEscape(devidp.WrongIssuer)})
			},
			want: denied("iss parameter names another issuer")},
		{name: "an attacker's own code for an identity that is not impersonated (login CSRF) is bounced",
			attack: func(h *harness, mark func()) result {
				h.idp.SetAutoLogin("bob", "")
				q := url.Values{"client_id": {testClientID}, "redirect_uri": {h.siteURL + "/oauth2/callback"},
					"response_type": {"code"}, "scope": {"openid profile email"}, "state": {"attacker-chosen-state"}}
				loc := h.advFollow(h.t, result{status: http.StatusFound,
					header: http.Header{"Location": {h.idpURL + "authorize?" + q.Encode()}}}, http.StatusFound).header.Get("Location")
				h.idp.SetAutoLogin("alice", "")
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(loc, h.siteURL)})
			},
			want: advWant{status: http.StatusFound, events: evUnsolicitedBounced, reason: "not impersonated"}},
		{name: "state fixed: a wrong state", site: fixed,
			attack: advLink("alice", "admin", impParams{State: "fixed-state-value-0123456780"}), want: denied("fixed value")},
		{name: "state fixed: no state", site: fixed, attack: advLink("alice", "admin", impParams{}), want: denied("fixed value")},
		{name: "state fixed: tokens, which carry no state", site: fixed,
			attack: advLink("alice", "admin", impParams{ResponseType: "token"}), want: denied("fixed value")},
		{name: "state fixed: the value (control)", site: fixed,
			attack: advLink("alice", "admin", impParams{State: "fixed-state-value-0123456789"}), want: started},
		{name: "state signed: a state of nobody's", site: signed,
			attack: advLink("alice", "admin", impParams{State: "i.Zm9yZ2VkLXN0YXRlLW9mLW5vYm9keXM"}),
			want:   denied("not a signed impersonation state")},
		{name: "state signed: a login state of this site, prefixed as a signed one", site: signed,
			attack: func(h *harness, mark func()) result {
				state, _ := h.impOtherBrowser().startAttempt()
				return advLink("alice", "admin", impParams{State: "i." + state})(h, mark)
			},
			want: denied("not a signed impersonation state")},
		{name: "state signed: minted by the admin (control)", site: signed, attack: advSigned("admin", 0), want: started},
		{name: "state signed: minted by the admin, used by another impersonator", site: signed, attack: advSigned("mallory", 0),
			want: denied("minted for another impersonator")},
		{name: "state signed: expired", site: signed, attack: advSigned("admin", signedStateTTL+time.Minute),
			want: denied("signed state expired")},
		{name: "state signed: used twice", site: signed,
			attack: func(h *harness, mark func()) result {
				state := h.advMintState()
				if res := advLink("alice", "admin", impParams{State: state})(h, func() {}); res.status != http.StatusSeeOther {
					h.t.Fatalf("the first use: %d", res.status)
				}
				return advLink("bob", "admin", impParams{State: state})(h.impOtherBrowser(), mark)
			},
			want: denied("signed state already used")},
		{name: "state signed: a login state this very browser started",
			site: signed,
			attack: func(h *harness, mark func()) result {
				state, _ := h.startAttempt()
				return advLink("alice", "admin", impParams{State: state})(h, mark)
			},
			// The provider lets the code go without a PKCE challenge; the nonce the attempt
			// expects is what catches it.
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "nonce does not match"}},
		{name: "minting a state with the session of someone not on the list", site: signedTo,
			attack: func(h *harness, mark func()) result {
				h.login("mallory")
				mark()
				return h.advSend(advReq{path: "/oauth2/impersonation/state", header: [][2]string{{"Accept", "application/json"}}})
			},
			want: advWant{status: http.StatusForbidden}},
		{name: "minting a state with an impersonated session", site: signedTo,
			attack: func(h *harness, mark func()) result {
				if res := advSigned("admin", 0)(h, func() {}); res.status != http.StatusSeeOther {
					h.t.Fatalf("impersonating: %d", res.status)
				}
				mark()
				return h.advSend(advReq{path: "/oauth2/impersonation/state", header: [][2]string{{"Accept", "application/json"}}})
			},
			want: advWant{status: http.StatusForbidden}},
	})
}

func TestAdversarialConfirmationCSRF(t *testing.T) {
	site := advSite{name: "impersonation with confirmation", cfg: advImp(ImpersonationConfig{})}
	refused := func(reason string) advWant {
		return advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: reason}
	}
	// answer brings the browser to the confirmation page, lets edit change the browser or the
	// form, and posts the form as the page would, from origin with headers.
	answer := func(origin string, edit func(h *harness, form url.Values) *harness, headers ...[2]string) advAttack {
		return func(h *harness, mark func()) result {
			token := impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))
			form := url.Values{"token": {token}, "decision": {"continue"}}
			b := h
			if edit != nil {
				b = edit(h, form)
			}
			mark()
			return b.advSend(advReq{method: http.MethodPost, path: "/oauth2/confirm", origin: origin,
				body: form.Encode(), header: headers})
		}
	}
	confirmCookie := func(h *harness) *http.Cookie {
		site, _ := url.Parse(h.siteURL)
		for _, c := range h.client.Jar.Cookies(site) {
			if c.Name == h.handler.jar.ConfirmName() {
				return &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"}
			}
		}
		h.t.Fatalf("no confirmation cookie: %v", h.cookieNames())
		return nil
	}
	runAdvTokenCases(t, []advTokenCase{
		{name: "Continue from the page (control)", site: site, attack: answer("self", nil),
			want: advWant{status: http.StatusSeeOther, events: evImpersonationConfirmed + "," + evImpersonationStarted}},
		{name: "Cancel", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness { f.Set("decision", "cancel"); return h }),
			want:   advWant{status: http.StatusOK, events: evImpersonationDenied, reason: "cancelled"}},
		{name: "delivered to a browser signed in as someone else, the session stays until Continue", site: site,
			attack: func(h *harness, mark func()) result {
				h.login("bob")
				loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(loc.String(), h.siteURL)})
			},
			want: advWant{status: http.StatusOK},
			after: func(h *harness) {
				if got := h.impUserinfo()["sub"]; got != "auth0|bob" {
					h.t.Errorf("signed in as %v, want bob still", got)
				}
			}},
		{name: "a post from another origin", site: site, attack: answer("https://evil.example", nil), want: refused("another origin")},
		{name: "a post marked cross-site", site: site, attack: answer("", nil, [2]string{"Sec-Fetch-Site", "cross-site"}),
			want: refused("another origin")},
		{name: "a post from a sibling site", site: site, attack: answer("", nil, [2]string{"Sec-Fetch-Site", "same-site"}),
			want: refused("another origin")},
		{name: "a post with Origin null, marked cross-site", site: site,
			attack: answer("null", nil, [2]string{"Sec-Fetch-Site", "cross-site"}), want: refused("another origin")},
		{name: "no token", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness { f.Del("token"); return h }),
			want:   refused("token does not match")},
		{name: "a wrong token", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness { f.Set("token", f.Get("token")+"x"); return h }),
			want:   refused("token does not match")},
		{name: "another confirmation's token", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness {
				f.Set("token", impConfirmToken(h.t, h.impOtherBrowser().browse(h.impLink("bob", "admin", impParams{}))))
				return h
			}),
			want: refused("token does not match")},
		{name: "the token without its cookie (another browser)", site: site,
			attack: answer("self", func(h *harness, _ url.Values) *harness { return h.impOtherBrowser() }),
			want:   refused("cookie missing")},
		{name: "the token and a copy of its cookie, once used", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness {
				c := confirmCookie(h)
				if res := h.advSend(advReq{method: http.MethodPost, path: "/oauth2/confirm", origin: "self", body: f.Encode()}); res.status != http.StatusSeeOther {
					h.t.Fatalf("the first Continue: %d", res.status)
				}
				other := h.impOtherBrowser()
				site, _ := url.Parse(h.siteURL)
				other.client.Jar.SetCookies(site, []*http.Cookie{c})
				return other
			}),
			want: refused("already used")},
		{name: "an expired confirmation", site: site,
			attack: answer("self", func(h *harness, _ url.Values) *harness { h.clock.Advance(confirmTTL + time.Minute); return h }),
			want:   refused("expired or invalid")},
		{name: "a JSON body", site: site,
			attack: func(h *harness, mark func()) result {
				token := impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))
				mark()
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/confirm", origin: "self", ctype: "application/json",
					body: `{"token":"` + token + `","decision":"continue"}`})
			},
			want: refused("token does not match")},
		{name: "a body over the limit", site: site,
			attack: answer("self", func(h *harness, f url.Values) *harness { f.Set("pad", strings.Repeat("a", 8<<10)); return h }),
			want:   refused("does not parse")},
	})
}

func TestAdversarialStashSwaps(t *testing.T) {
	// plant puts a stash cookie beside an impersonated session of alice by admin, then ends the
	// impersonation from the site's own page.
	plant := func(stash func(h *harness) string) advAttack {
		return func(h *harness, mark func()) result {
			h.advImpersonate()
			site, _ := url.Parse(h.siteURL)
			h.client.Jar.SetCookies(site, []*http.Cookie{{Name: h.handler.jar.StashName(), Value: stash(h), Path: "/"}})
			mark()
			return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end", origin: "self"})
		}
	}
	admin := func(h *harness) *session.Session {
		return advSessionOf(h, "auth0|admin", "admin@example.com", "admins")
	}
	ended := advWant{status: http.StatusSeeOther, events: evImpersonationEnded}
	signedOut := func(h *harness) { h.impNoSession() }
	sub := func(want string) func(h *harness) {
		return func(h *harness) {
			if got := h.impUserinfo()["sub"]; got != want {
				h.t.Errorf("signed in as %v, want %s", got, want)
			}
		}
	}
	runAdvTokenCases(t, []advTokenCase{
		{name: "the admin's own session, stashed by the module (control)",
			attack: func(h *harness, mark func()) result {
				h.login("admin")
				h.advImpersonate()
				mark()
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end", origin: "self"})
			},
			want: ended, restores: true, after: sub("auth0|admin")},
		{name: "another user's session in the stash",
			attack: plant(func(h *harness) string {
				return advSeal(h, session.PurposeStash, advSessionOf(h, "auth0|bob", "bob@example.com"))
			}),
			want: ended, after: signedOut},
		{name: "garbage in the stash", attack: plant(func(*harness) string { return "Zm9yZ2VkLXN0YXNo" }), want: ended, after: signedOut},
		{name: "the admin's session sealed as a session, not a stash",
			attack: plant(func(h *harness) string { return advSeal(h, session.PurposeSession, admin(h)) }),
			want:   ended, after: signedOut},
		{name: "an impersonated session of the admin's in the stash",
			attack: plant(func(h *harness) string {
				s := admin(h)
				s.Impersonated, s.ImpersonatorID = true, "auth0|mallory"
				return advSeal(h, session.PurposeStash, s)
			}),
			want: ended, after: signedOut},
		{name: "the admin's own session in the stash, expired",
			attack: plant(func(h *harness) string {
				s := admin(h)
				s.Expires = h.clock.Now().Add(-time.Second)
				return h.handler.sealer.Seal(session.PurposeStash, s.Marshal(), h.clock.Now().Add(time.Hour))
			}),
			want: ended, after: signedOut},
		{name: "a stash beside a session that is not impersonated",
			attack: func(h *harness, mark func()) result {
				h.login("alice")
				site, _ := url.Parse(h.siteURL)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: h.handler.jar.StashName(),
					Value: advSeal(h, session.PurposeStash, admin(h)), Path: "/"}})
				mark()
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end", origin: "self"})
			},
			want: advWant{status: http.StatusSeeOther}, after: sub("auth0|alice")},
		{name: "ending from another origin",
			attack: func(h *harness, mark func()) result {
				h.advImpersonate()
				mark()
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end", origin: "https://evil.example"})
			},
			want: advWant{status: http.StatusForbidden}, after: sub("auth0|alice")},
		{name: "ending marked cross-site",
			attack: func(h *harness, mark func()) result {
				h.advImpersonate()
				mark()
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/impersonation/end",
					header: [][2]string{{"Sec-Fetch-Site", "cross-site"}}})
			},
			want: advWant{status: http.StatusForbidden}, after: sub("auth0|alice")},
	})
}

// advOrdinaryAs is an ordinary login in which the provider signs in user, impersonated by
// impersonator (a Keycloak or RFC 8693 impersonation the site asked for).
func advOrdinaryAs(user, impersonator string) advAttack {
	return func(h *harness, mark func()) result {
		h.idp.SetAutoLogin(user, impersonator)
		return advOrdinary()(h, mark)
	}
}
