package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// ID tokens: hand-made ones posted to the callback as an unsolicited form post beside a
// genuine impersonation access token (alg tricks, unknown kid, wrong iss/aud/azp, exp/iat/nbf
// edges, nonce, at_hash, sub mismatch, replays), and the provider's own, spoiled by its
// misbehaviour switches, on the unsolicited code and token paths and on an ordinary login.

// advAttack is one attack: it prepares what it needs, calls mark just before the request that
// is judged, and returns that request's answer.
type advAttack func(h *harness, mark func()) result

// advTokenCase is a case of the ID-token and impersonation tables.
type advTokenCase struct {
	name   string
	site   advSite // default: advImpSite
	attack advAttack
	want   advWant
	// restores: the answer gives the browser back a session it had (impersonation/end).
	restores bool
	// after checks what the browser is left with.
	after func(h *harness)
}

// The sites of the ID-token and impersonation tables.
var (
	advImpSite   = advSite{name: "impersonation on, no confirmation", cfg: advImp(ImpersonationConfig{Confirm: boolPtr(false)})}
	advPlainSite = advSite{name: "defaults"}
)

func runAdvTokenCases(t *testing.T, cases []advTokenCase) {
	t.Helper()
	advEach(t, cases, func(c advTokenCase) (advSite, string) {
		if c.site.name == "" {
			return advImpSite, c.name
		}
		return c.site, c.name
	}, func(t *testing.T, h *harness, tc advTokenCase) {
		var m advMark
		res := tc.attack(h, func() { m = h.advMark() })
		h.advCheck(m, res, tc.want)
		signsIn := tc.restores || strings.HasSuffix(tc.want.events, evImpersonationStarted) ||
			strings.HasSuffix(tc.want.events, evLogin)
		if got := advIssuesSession(res, h.handler.jar.Base); got != signsIn {
			t.Errorf("the answer issues a session cookie: %t, want %t (%q)", got, signsIn, res.header.Values("Set-Cookie"))
		}
		if tc.after != nil {
			tc.after(h)
		}
	})
}

// advIssuesSession reports whether the response sets the session cookie called name (whole or
// in chunks).
func advIssuesSession(res result, name string) bool {
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if (c.Name == name || strings.HasPrefix(c.Name, name+"_") && strings.Trim(c.Name[len(name)+1:], "0123456789") == "") &&
			c.Value != "" && c.MaxAge >= 0 {
			return true
		}
	}
	return false
}

// advIDToken mints an ID token for alice from this client, signed by the provider, changed
// as edit says.
func advIDToken(h *harness, edit func(*devidp.AccessTokenOptions)) string {
	h.t.Helper()
	o := devidp.AccessTokenOptions{Typ: "JWT", Subject: "auth0|alice", Audience: []string{testClientID},
		ClientID: testClientID, ExpiresAt: h.clock.Now().Add(time.Hour)}
	if edit != nil {
		edit(&o)
	}
	tok, err := h.idp.MintAccessToken(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// advPost posts tokens to the callback as a provider's form post does.
func (h *harness) advPost(fields url.Values) result {
	h.t.Helper()
	return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/callback", body: fields.Encode(),
		origin: strings.TrimSuffix(h.idpURL, "/")})
}

// advPosted posts idToken(h) beside a genuine access token of alice impersonated by admin.
func advPosted(idToken func(h *harness) string) advAttack {
	return func(h *harness, mark func()) result {
		at := h.impFragment("alice", "admin").Get("access_token")
		idt := idToken(h)
		mark()
		return h.advPost(url.Values{"id_token": {idt}, "access_token": {at}, "token_type": {"Bearer"}, "expires_in": {"3600"}})
	}
}

// advMinted is advPosted with a minted ID token.
func advMinted(edit func(h *harness, o *devidp.AccessTokenOptions)) advAttack {
	return advPosted(func(h *harness) string {
		return advIDToken(h, func(o *devidp.AccessTokenOptions) {
			if edit != nil {
				edit(h, o)
			}
		})
	})
}

// advHS256 is an ID token for alice signed HS256 with key, under the provider's kid.
func advHS256(key func(h *harness) []byte) func(h *harness) string {
	return func(h *harness) string {
		enc := base64.RawURLEncoding
		header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": h.idp.Kids()[0]})
		now := h.clock.Now()
		claims, _ := json.Marshal(map[string]any{"iss": h.idpURL, "sub": "auth0|alice", "aud": testClientID,
			"azp": testClientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
		mac := hmac.New(sha256.New, key(h))
		mac.Write([]byte(input))
		return input + "." + enc.EncodeToString(mac.Sum(nil))
	}
}

// advMisbehaving sends a code (or, with tokens, a token response relayed from the fragment)
// of alice impersonated by admin, from a provider misbehaving as ms says.
func advMisbehaving(tokens bool, ms ...devidp.Misbehaviour) advAttack {
	return func(h *harness, mark func()) result {
		if err := h.idp.SetMisbehaviour(ms...); err != nil {
			h.t.Fatal(err)
		}
		p := impParams{Scope: "openid profile email"}
		if tokens {
			p.ResponseType = "token"
		}
		loc := h.impCallback(h.impLink("alice", "admin", p))
		mark()
		if tokens {
			return h.impRelayFragment(loc)
		}
		return h.advSend(advReq{path: strings.TrimPrefix(loc.String(), h.siteURL)})
	}
}

// advOrdinary is an ordinary login from a provider misbehaving as ms says, stopped at the
// callback's answer.
func advOrdinary(ms ...devidp.Misbehaviour) advAttack {
	return func(h *harness, mark func()) result {
		if err := h.idp.SetMisbehaviour(ms...); err != nil {
			h.t.Fatal(err)
		}
		mark()
		return h.advFollow(h.t, h.advFollow(h.t, h.advSend(advReq{path: "/app"}), http.StatusFound), http.StatusFound)
	}
}

func TestAdversarialIDTokens(t *testing.T) {
	denied := func(reason string) advWant {
		return advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: reason}
	}
	started := advWant{status: http.StatusSeeOther, events: evImpersonationStarted}
	at := func(d time.Duration) func(h *harness) time.Time {
		return func(h *harness) time.Time { return h.clock.Now().Add(d) }
	}
	runAdvTokenCases(t, []advTokenCase{
		{name: "a well-made ID token (control)", attack: advMinted(nil), want: started},
		{name: "alg none", attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Unsigned = true }),
			want: denied("ID token does not verify")},
		{name: "HS256 with the client secret as the key",
			attack: advPosted(advHS256(func(*harness) []byte { return []byte(testClientSecret) })),
			want:   denied("ID token does not verify")},
		{name: "HS256 with the provider's public key as the key",
			attack: advPosted(advHS256(func(h *harness) []byte {
				der, err := x509.MarshalPKIXPublicKey(advKey().Public())
				if err != nil {
					h.t.Fatal(err)
				}
				return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			})),
			want: denied("ID token does not verify")},
		{name: "a signature that does not verify",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.BadSignature = true }),
			want:   denied("ID token does not verify")},
		{name: "a kid the key set does not publish",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Kid = "forged-kid" }),
			want:   denied("ID token does not verify")},
		{name: "another issuer",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Issuer = devidp.WrongIssuer }),
			want:   denied("ID token does not verify")},
		{name: "another audience",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Audience = []string{"another-client"} }),
			want:   denied("ID token does not verify")},
		{name: "no audience",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Audience = nil }),
			want:   denied("ID token does not verify")},
		{name: "expired a second ago",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.ExpiresAt = at(-time.Second)(h) }),
			want:   denied("ID token does not verify")},
		{name: "no exp",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.NoExpiry = true }),
			want:   denied("ID token does not verify")},
		{name: "expiring in a second (control)",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.ExpiresAt = at(time.Second)(h) }),
			want:   started},
		{name: "issued beyond the clock skew",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.IssuedAt = at(maxIssuedAtSkew + 5*time.Second)(h) }),
			want:   denied("ID token issued in the future")},
		{name: "issued within the clock skew (control)",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.IssuedAt = at(maxIssuedAtSkew - 5*time.Second)(h) }),
			want:   started},
		{name: "not valid before an hour from now",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.NotBefore = at(time.Hour)(h) }),
			want:   denied("ID token does not verify")},
		{name: "no subject",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Subject = "" }),
			want:   denied("ID token has no subject")},
		{name: "a nonce in an unsolicited response",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Nonce = "forged-nonce" }),
			want:   denied("ID token carries a nonce")},
		{name: "an at_hash naming another access token",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) {
				o.Claims = map[string]any{"at_hash": "Zm9yZ2VkLWF0LWhhc2g"}
			}),
			want: denied("at_hash")},
		{name: "issued longer ago than max_age",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) { o.IssuedAt = at(-6 * time.Minute)(h) }),
			want:   denied("stale")},
		{name: "a fresh iat but an auth_time older than max_age",
			attack: advMinted(func(h *harness, o *devidp.AccessTokenOptions) {
				o.Claims = map[string]any{"auth_time": at(-6 * time.Minute)(h).Unix()}
			}),
			want: denied("stale")},
		{name: "bob's ID token beside alice's access token (userinfo sub mismatch)",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) { o.Subject = "auth0|bob" }),
			want:   advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "userinfo sub differs"}},
		{name: "several audiences, the authorized party another client",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) {
				o.Audience, o.Claims = []string{testClientID, "another-client"}, map[string]any{"azp": "another-client"}
			}),
			want: denied("azp")},
		{name: "this client's audience, the authorized party another client",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) {
				o.Claims = map[string]any{"azp": "another-client"}
			}),
			want: denied("azp")},
		{name: "several audiences, no authorized party",
			attack: advMinted(func(_ *harness, o *devidp.AccessTokenOptions) {
				o.Audience, o.ClientID = []string{testClientID, "another-client"}, ""
			}),
			want: denied("azp")},
		{name: "a token type other than Bearer",
			attack: func(h *harness, mark func()) result {
				f := h.impFragment("alice", "admin")
				f.Set("token_type", "mac")
				mark()
				return h.advPost(f)
			},
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "token type is not Bearer"}},
		{name: "an ID token without an access token",
			attack: func(h *harness, mark func()) result {
				idt := advIDToken(h, nil)
				mark()
				return h.advPost(url.Values{"id_token": {idt}, "token_type": {"Bearer"}})
			},
			want: denied("no access token for userinfo")},
		{name: "an ID token naming its access token, without it",
			attack: func(h *harness, mark func()) result {
				f := h.impFragment("alice", "admin")
				f.Del("access_token")
				mark()
				return h.advPost(f)
			},
			want: denied("at_hash")},
		{name: "an access token without an ID token",
			attack: func(h *harness, mark func()) result {
				f := h.impFragment("alice", "admin")
				f.Del("id_token")
				mark()
				return h.advPost(f)
			},
			want: denied("no ID token")},
	})
}

func TestAdversarialIDTokenReplays(t *testing.T) {
	denied := func(reason string) advWant {
		return advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: reason}
	}
	// twice posts first, which must sign in, then second.
	twice := func(first, second func(h *harness, idt, at []string) url.Values) advAttack {
		return func(h *harness, mark func()) result {
			ats := []string{h.impFragment("alice", "admin").Get("access_token"), h.impFragment("alice", "admin").Get("access_token")}
			idts := []string{advIDToken(h, nil), advIDToken(h, nil)}
			if res := h.impOtherBrowser().advPost(first(h, idts, ats)); res.status != http.StatusSeeOther {
				h.t.Fatalf("the first delivery: %d %.300s", res.status, res.body)
			}
			mark()
			return h.advPost(second(h, idts, ats))
		}
	}
	pair := func(i, j int) func(h *harness, idt, at []string) url.Values {
		return func(_ *harness, idt, at []string) url.Values {
			return url.Values{"id_token": {idt[i]}, "access_token": {at[j]}, "token_type": {"Bearer"}}
		}
	}
	runAdvTokenCases(t, []advTokenCase{
		{name: "the same posted tokens twice", attack: twice(pair(0, 0), pair(0, 0)), want: denied("replayed")},
		{name: "the same ID token with another access token", attack: twice(pair(0, 0), pair(0, 1)),
			want: denied("ID token replayed")},
		{name: "the same access token with another ID token", attack: twice(pair(0, 0), pair(1, 0)),
			want: denied("access token replayed")},
		{name: "the same code twice, from another browser",
			attack: func(h *harness, mark func()) result {
				loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "s"}))
				path := strings.TrimPrefix(loc.String(), h.siteURL)
				if res := h.advSend(advReq{path: path}); res.status != http.StatusSeeOther {
					h.t.Fatalf("the first delivery: %d", res.status)
				}
				mark()
				return h.impOtherBrowser().advSend(advReq{path: path})
			},
			want: denied("replayed")},
		{name: "code injection: an attacker's own code, made with PKCE, under this browser's state", site: advPlainSite,
			attack: func(h *harness, mark func()) result {
				attacker := h.impOtherBrowser()
				attacker.idp.SetAutoLogin("mallory", "")
				cb := attacker.advFollow(h.t, attacker.advSend(advReq{path: "/app"}), http.StatusFound)
				code, _ := url.Parse(cb.header.Get("Location"))
				h.idp.SetAutoLogin("alice", "")
				state, _ := h.startAttempt()
				mark()
				return h.advSend(advReq{path: "/oauth2/callback?code=" + url.QueryEscape(code.Query().Get("code")) +
					"&state=" + url.QueryEscape(state)})
			},
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "code exchange refused: invalid_grant: Failed to verify code_verifier."}},
		{name: "code injection: an attacker's own code, made without PKCE, under this browser's state", site: advPlainSite,
			attack: func(h *harness, mark func()) result {
				h.idp.SetAutoLogin("mallory", "")
				q := url.Values{"client_id": {testClientID}, "redirect_uri": {h.siteURL + "/oauth2/callback"},
					"response_type": {"code"}, "scope": {"openid profile email"}, "state": {"attacker"}}
				cb := h.advFollow(h.t, result{status: http.StatusFound,
					header: http.Header{"Location": {h.idpURL + "authorize?" + q.Encode()}}}, http.StatusFound)
				code, _ := url.Parse(cb.header.Get("Location"))
				h.idp.SetAutoLogin("alice", "")
				state, _ := h.startAttempt()
				mark()
				return h.advSend(advReq{path: "/oauth2/callback?code=" + url.QueryEscape(code.Query().Get("code")) +
					"&state=" + url.QueryEscape(state)})
			},
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "nonce does not match"}},
		{name: "a solicited login's callback again, its attempt cookie put back",
			site: advPlainSite,
			attack: func(h *harness, mark func()) result {
				res := h.advSend(advReq{path: "/app"})
				site, _ := url.Parse(h.siteURL)
				kept := h.client.Jar.Cookies(site)
				cb := h.advFollow(h.t, res, http.StatusFound)
				if h.advFollow(h.t, cb, http.StatusFound).status != http.StatusSeeOther {
					h.t.Fatal("the login did not complete")
				}
				h.client.Jar.SetCookies(site, kept)
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(cb.header.Get("Location"), h.siteURL)})
			},
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "login attempt already used"}},
	})
}

func TestAdversarialMisbehavingProvider(t *testing.T) {
	denied := func(reason string) advWant {
		return advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: reason}
	}
	loginFailed := func(reason string) advWant {
		return advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: reason}
	}
	runAdvTokenCases(t, []advTokenCase{
		{name: "code: another issuer", attack: advMisbehaving(false, devidp.IDTokenWrongIssuer), want: denied("ID token does not verify")},
		{name: "code: another audience", attack: advMisbehaving(false, devidp.IDTokenWrongAudience), want: denied("ID token does not verify")},
		{name: "code: alg none", attack: advMisbehaving(false, devidp.IDTokenAlgNone), want: denied("ID token does not verify")},
		{name: "code: a bad signature", attack: advMisbehaving(false, devidp.IDTokenBadSignature), want: denied("ID token does not verify")},
		{name: "code: expired", attack: advMisbehaving(false, devidp.IDTokenExpired), want: denied("ID token does not verify")},
		{name: "code: issued a day ahead", attack: advMisbehaving(false, devidp.IDTokenIssuedInFuture), want: denied("issued in the future")},
		{name: "code: not yet valid", attack: advMisbehaving(false, devidp.IDTokenNotYetValid), want: denied("ID token does not verify")},
		{name: "code: no iat", attack: advMisbehaving(false, devidp.IDTokenWithoutIat), want: denied("ID token has no iat")},
		{name: "code: no sub", attack: advMisbehaving(false, devidp.IDTokenWithoutSub), want: denied("ID token has no subject")},
		{name: "code: userinfo names another sub", attack: advMisbehaving(false, devidp.UserinfoWrongSub),
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "userinfo sub differs"}},
		{name: "tokens: a wrong at_hash", attack: advMisbehaving(true, devidp.IDTokenWrongAtHash), want: denied("at_hash")},
		{name: "tokens: expired", attack: advMisbehaving(true, devidp.IDTokenExpired), want: denied("ID token does not verify")},
		{name: "ordinary login: a wrong nonce", site: advPlainSite,
			attack: advOrdinary(devidp.IDTokenWrongNonce), want: loginFailed("nonce does not match")},
		{name: "ordinary login: userinfo names another sub", site: advPlainSite,
			attack: advOrdinary(devidp.UserinfoWrongSub), want: loginFailed("userinfo sub differs")},
		{name: "ordinary login: an iss parameter naming another issuer (mix-up)", site: advPlainSite,
			attack: func(h *harness, mark func()) result {
				cb := h.advFollow(h.t, h.advSend(advReq{path: "/app"}), http.StatusFound)
				mark()
				return h.advSend(advReq{path: strings.TrimPrefix(cb.header.Get("Location"), h.siteURL) +
					"&iss=" + url.QueryEscape(devidp.WrongIssuer)})
			},
			want: loginFailed("iss parameter names another issuer")},
		{name: "ordinary login: tokens posted where its code belongs", site: advPlainSite,
			attack: func(h *harness, mark func()) result {
				state, _ := h.startAttempt()
				mark()
				return h.advPost(url.Values{"state": {state}, "id_token": {advIDToken(h, nil)}, "access_token": {"x"}})
			},
			want: loginFailed("no code in a solicited response")},
	})
}
