package caddymodule

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Cookies: a session cookie that is forged, truncated, tampered with, sealed for another
// purpose or under a retired key, expired, split into chunks that are reordered, missing or
// surplus, oversized — and the other cookies of the module (login attempts, confirmation) forged
// or swapped. Anything that does not open is no session: 401 (the request is an API call), the
// application sees nothing, and a cookie that was there is audited as session_rejected.

// advOldSecret is a secret the suite's sites used before: configured as the second one it
// still opens cookies; removed, it opens nothing.
const advOldSecret = "fedcba9876543210fedcba9876543210-old"

// advSessionOf is a session of the user's own from the site's provider, valid for an hour from
// now on the harness's clock.
func advSessionOf(h *harness, sub, email string, groups ...string) *session.Session {
	now := h.clock.Now()
	return &session.Session{ID: "sess-adv-" + sub, Subject: sub, Email: email, EmailVerified: true,
		Groups: groups, Created: now, LastSeen: now, Expires: now.Add(time.Hour), Provider: h.handler.provKey}
}

// advAlice is alice's own session.
func advAlice(h *harness) *session.Session {
	return advSessionOf(h, "auth0|alice", "alice@example.com", "staff")
}

// advBigAlice is advAlice with a kept claim large enough to take three cookie chunks.
func advBigAlice(h *harness) *session.Session {
	s := advAlice(h)
	s.Claims = []session.Claim{{Name: "blob", Value: strings.Repeat("x", 2*session.ChunkSize)}}
	return s
}

// advSeal seals s as the site's handler does, for purpose.
func advSeal(h *harness, purpose session.Purpose, s *session.Session) string {
	return h.handler.sealer.Seal(purpose, s.Marshal(), s.Expires)
}

// advChunks splits a sealed value into the site's chunk cookies name_0, name_1, ...
func advChunks(name, sealed string) []string {
	var cs []string
	for i := 0; sealed != ""; i++ {
		part := sealed[:min(session.ChunkSize, len(sealed))]
		sealed = sealed[len(part):]
		cs = append(cs, name+"_"+strconv.Itoa(i)+"="+part)
	}
	return cs
}

// advFlip changes one character in the middle of a sealed value.
func advFlip(v string) string {
	i := len(v) / 2
	c := byte('A')
	if v[i] == 'A' {
		c = 'B'
	}
	return v[:i] + string(c) + v[i+1:]
}

func TestAdversarialSessionCookies(t *testing.T) {
	// sealedUnderOld is alice's session sealed under advOldSecret.
	sealedUnderOld := func(h *harness, base string) string {
		old, err := session.NewSealer([]string{advOldSecret})
		if err != nil {
			t.Fatal(err)
		}
		s := advAlice(h)
		return base + "=" + old.Seal(session.PurposeSession, s.Marshal(), s.Expires)
	}
	rejected := func(reason string) advWant {
		return advWant{status: http.StatusUnauthorized, events: evSessionRejected, reason: reason}
	}
	passes := advWant{status: http.StatusOK, reaches: true}
	rotated := advSite{name: "a new secret first, the previous one second", cfg: func(c *Handler) {
		c.SessionSecrets = []string{testSecret + "-new", advOldSecret}
	}}
	idle := advSite{name: "session_idle 10m", cfg: func(c *Handler) { c.SessionIdle = durationOf(10 * time.Minute) }}
	type cookieCase struct {
		name   string
		site   advSite                              // default: the defaults
		cookie func(h *harness, base string) string // the Cookie header
		want   advWant
	}
	cases := []cookieCase{
		{name: "a session sealed by the site (control)",
			cookie: func(h *harness, base string) string {
				return base + "=" + advSeal(h, session.PurposeSession, advAlice(h))
			},
			want: passes},
		{name: "a forged value",
			cookie: func(h *harness, base string) string {
				return base + "=" + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("forged session ", 8)))
			},
			want: rejected("does not open")},
		{name: "an empty value",
			cookie: func(h *harness, base string) string { return base + "=" },
			want:   rejected("does not open")},
		{name: "truncated",
			cookie: func(h *harness, base string) string {
				v := advSeal(h, session.PurposeSession, advAlice(h))
				return base + "=" + v[:len(v)-8]
			},
			want: rejected("does not open")},
		{name: "one character changed",
			cookie: func(h *harness, base string) string {
				return base + "=" + advFlip(advSeal(h, session.PurposeSession, advAlice(h)))
			},
			want: rejected("does not open")},
		{name: "sealed for the stash",
			cookie: func(h *harness, base string) string {
				return base + "=" + advSeal(h, session.PurposeStash, advAlice(h))
			},
			want: rejected("does not open")},
		{name: "sealed for a confirmation",
			cookie: func(h *harness, base string) string {
				return base + "=" + advSeal(h, session.PurposeConfirm, advAlice(h))
			},
			want: rejected("does not open")},
		{name: "sealed under a retired secret",
			cookie: sealedUnderOld,
			want:   rejected("does not open")},
		{name: "sealed under the previous secret, still configured (control)", site: rotated,
			cookie: sealedUnderOld,
			want:   passes},
		{name: "a session issued for another provider or client of the site",
			cookie: func(h *harness, base string) string {
				s := advAlice(h)
				s.Provider = "another-provider"
				return base + "=" + advSeal(h, session.PurposeSession, s)
			},
			want: rejected("another provider")},
		{name: "a seal that expired",
			cookie: func(h *harness, base string) string {
				s := advAlice(h)
				return base + "=" + h.handler.sealer.Seal(session.PurposeSession, s.Marshal(), h.clock.Now().Add(-time.Second))
			},
			want: rejected("expired")},
		{name: "a session that expired, in a seal that did not",
			cookie: func(h *harness, base string) string {
				s := advAlice(h)
				s.Expires = h.clock.Now().Add(-time.Second)
				return base + "=" + h.handler.sealer.Seal(session.PurposeSession, s.Marshal(), h.clock.Now().Add(time.Hour))
			},
			want: rejected("expired")},
		{name: "a session idle too long", site: idle,
			cookie: func(h *harness, base string) string {
				s := advAlice(h)
				s.LastSeen = h.clock.Now().Add(-11 * time.Minute)
				return base + "=" + advSeal(h, session.PurposeSession, s)
			},
			want: rejected("idle")},
		{name: "sealed garbage",
			cookie: func(h *harness, base string) string {
				return base + "=" + h.handler.sealer.Seal(session.PurposeSession, []byte("\x01forged"), h.clock.Now().Add(time.Hour))
			},
			want: rejected("malformed")},
		{name: "chunks, all in order (control)",
			cookie: func(h *harness, base string) string {
				return strings.Join(advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h))), "; ")
			},
			want: passes},
		{name: "chunks, the first two swapped",
			cookie: func(h *harness, base string) string {
				cs := advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h)))
				v0, v1 := strings.SplitN(cs[0], "=", 2)[1], strings.SplitN(cs[1], "=", 2)[1]
				cs[0], cs[1] = base+"_0="+v1, base+"_1="+v0
				return strings.Join(cs, "; ")
			},
			want: rejected("does not open")},
		{name: "chunks, the middle one missing",
			cookie: func(h *harness, base string) string {
				cs := advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h)))
				return cs[0] + "; " + cs[2]
			},
			want: rejected("does not open")},
		{name: "chunks, the first one missing",
			cookie: func(h *harness, base string) string {
				cs := advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h)))
				return cs[1] + "; " + cs[2]
			},
			want: advWant{status: http.StatusUnauthorized}},
		{name: "chunks, with a surplus one",
			cookie: func(h *harness, base string) string {
				cs := advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h)))
				return strings.Join(append(cs, base+"_"+strconv.Itoa(len(cs))+"=Zm9yZ2Vk"), "; ")
			},
			want: rejected("does not open")},
		{name: "chunks, with a whole cookie beside them",
			cookie: func(h *harness, base string) string {
				cs := advChunks(base, advSeal(h, session.PurposeSession, advBigAlice(h)))
				return strings.Join(append([]string{base + "=Zm9yZ2Vk"}, cs...), "; ")
			},
			want: rejected("does not open")},
		{name: "a session split into more chunks than are read",
			cookie: func(h *harness, base string) string {
				v, cs := advSeal(h, session.PurposeSession, advAlice(h)), []string(nil)
				n := len(v)/(session.MaxChunks+1) + 1
				for i := 0; v != ""; i++ {
					part := v[:min(n, len(v))]
					v = v[len(part):]
					cs = append(cs, base+"_"+strconv.Itoa(i)+"="+part)
				}
				if len(cs) <= session.MaxChunks {
					t.Fatalf("%d chunks", len(cs))
				}
				return strings.Join(cs, "; ")
			},
			want: rejected("does not open")},
		{name: "a forged cookie before the real one of the same name",
			cookie: func(h *harness, base string) string {
				return base + "=Zm9yZ2Vk; " + base + "=" + advSeal(h, session.PurposeSession, advAlice(h))
			},
			want: rejected("does not open")},
		{name: "a cookie over the server's header limit (Caddy refuses it before any handler)",
			cookie: func(h *harness, base string) string { return base + "=" + strings.Repeat("A", 40<<10) },
			want:   advWant{status: http.StatusRequestHeaderFieldsTooLarge}},
		{name: "a session beside an oversized cookie",
			cookie: func(h *harness, base string) string {
				return base + "=" + advSeal(h, session.PurposeSession, advAlice(h)) + "; pad=" + strings.Repeat("A", 1<<20)
			},
			want: advWant{status: http.StatusRequestHeaderFieldsTooLarge}},
	}
	advEach(t, cases, func(c cookieCase) (advSite, string) {
		if c.site.name == "" {
			return advSite{name: "defaults"}, c.name
		}
		return c.site, c.name
	}, func(t *testing.T, h *harness, tc cookieCase) {
		m := h.advMark()
		res := h.advSend(advReq{path: "/app", bare: true,
			header: [][2]string{{"Accept", "application/json"}, {"Cookie", tc.cookie(h, h.handler.jar.Base)}}})
		h.advCheck(m, res, tc.want)
		if tc.want.reaches {
			if u := h.upstreamHeaders().Get("X-Forwarded-User"); u != "auth0|alice" {
				t.Errorf("the application saw X-Forwarded-User %q", u)
			}
			if c := h.upstreamHeaders().Get("Cookie"); strings.Contains(c, h.handler.jar.Base) {
				t.Errorf("the application saw the module's cookies: %.100s", c)
			}
		}
		// Another provider's session is not this handler's to clear.
		if tc.want.events == evSessionRejected && !strings.Contains(tc.want.reason, "another provider") &&
			!advClears(res, h.handler.jar.Base) {
			t.Errorf("the rejected cookie was not cleared: %q", res.header.Values("Set-Cookie"))
		}
	})
}

// advClears reports whether the response expires the cookie called name (or its chunks).
func advClears(res result, name string) bool {
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if (c.Name == name || strings.HasPrefix(c.Name, name+"_")) && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

func TestAdversarialLoginCookies(t *testing.T) {
	// callback answers this browser's login with a forged code; cookies edits its cookies first.
	callback := func(cookies func(h *harness, state string)) func(h *harness) result {
		return func(h *harness) result {
			state, _ := h.startAttempt()
			cookies(h, state)
			return h.advSend(advReq{path: "/oauth2/callback?code=forged&state=" + url.QueryEscape(state)})
		}
	}
	attemptCookie := func(h *harness) (*url.URL, *http.Cookie) {
		site, _ := url.Parse(h.siteURL)
		for _, c := range h.client.Jar.Cookies(site) {
			if strings.HasPrefix(c.Name, h.handler.jar.AttemptPrefix()) {
				return site, c
			}
		}
		h.t.Fatalf("no attempt cookie: %v", h.cookieNames())
		return nil, nil
	}
	type loginCookieCase struct {
		name   string
		attack func(h *harness) result
		want   advWant
	}
	cases := []loginCookieCase{
		{name: "a forged attempt cookie",
			attack: callback(func(h *harness, _ string) {
				site, c := attemptCookie(h)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: c.Name, Value: "Zm9yZ2Vk", Path: "/"}})
			}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "state does not match the attempt"}},
		{name: "another attempt's cookie under this attempt's name",
			attack: callback(func(h *harness, _ string) {
				site, c := attemptCookie(h)
				other := h.impOtherBrowser()
				other.startAttempt()
				_, oc := attemptCookie(other)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: c.Name, Value: oc.Value, Path: "/"}})
			}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "state does not match the attempt"}},
		{name: "the attempt cookie missing",
			attack: callback(func(h *harness, _ string) {
				site, c := attemptCookie(h)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: c.Name, Value: "", Path: "/", MaxAge: -1}})
			}),
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "attempt cookie missing"}},
		{name: "thirty forged attempt cookies at start",
			attack: func(h *harness) result {
				var cs []string
				for i := range 30 {
					cs = append(cs, h.handler.jar.AttemptPrefix()+"f"+strconv.Itoa(i)+"=Zm9yZ2Vk")
				}
				res := h.advSend(advReq{path: "/oauth2/start", bare: true, header: [][2]string{{"Cookie", strings.Join(cs, "; ")}}})
				if n := len(res.header.Values("Set-Cookie")); n < 31 {
					h.t.Errorf("%d cookies set, want the 30 forged ones cleared and one attempt", n)
				}
				return res
			},
			want: advWant{status: http.StatusFound}},
		{name: "an attempt older than ten minutes",
			attack: func(h *harness) result {
				state, _ := h.startAttempt()
				h.clock.Advance(attemptTTL + time.Second)
				return h.advSend(advReq{path: "/oauth2/callback?code=forged&state=" + url.QueryEscape(state)})
			},
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "attempt expired"}},
		{name: "another browser's state (no attempt cookie here): an error page, not a login loop",
			attack: func(h *harness) result {
				state, _ := h.impOtherBrowser().startAttempt()
				return h.advSend(advReq{path: "/oauth2/callback?code=forged&state=" + url.QueryEscape(state)})
			},
			want: advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: "attempt cookie missing"}},
		{name: "a forged confirmation cookie",
			attack: func(h *harness) result {
				token := impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))
				site, _ := url.Parse(h.siteURL)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: h.handler.jar.ConfirmName(), Value: "Zm9yZ2Vk", Path: "/"}})
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/confirm", origin: "self",
					body: url.Values{"token": {token}, "decision": {"continue"}}.Encode()})
			},
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "expired or invalid"}},
		{name: "a session cookie where the confirmation cookie goes",
			attack: func(h *harness) result {
				token := impConfirmToken(h.t, h.browse(h.impLink("alice", "admin", impParams{})))
				site, _ := url.Parse(h.siteURL)
				h.client.Jar.SetCookies(site, []*http.Cookie{{Name: h.handler.jar.ConfirmName(),
					Value: advSeal(h, session.PurposeSession, advAlice(h)), Path: "/"}})
				return h.advSend(advReq{method: http.MethodPost, path: "/oauth2/confirm", origin: "self",
					body: url.Values{"token": {token}, "decision": {"continue"}}.Encode()})
			},
			want: advWant{status: http.StatusBadRequest, events: evImpersonationDenied, reason: "expired or invalid"}},
	}
	advEach(t, cases, func(c loginCookieCase) (advSite, string) {
		return advSite{name: "impersonation on", cfg: advImp(ImpersonationConfig{})}, c.name
	}, func(t *testing.T, h *harness, tc loginCookieCase) {
		m := h.advMark()
		res := tc.attack(h)
		h.advCheck(m, res, tc.want)
		h.impNoSession()
	})
}

// advManyGroups gives alice 800 groups: a session of about 28 KB, more than Caddy reads back
// in a request's headers (16 KB by default).
func advManyGroups(c *devidp.Config) {
	users := devidp.DemoUsers()
	for i := range 800 {
		users[0].Groups = append(users[0].Groups, fmt.Sprintf("department-%04d-all-staff", i))
	}
	c.Users = users
}

// A session too large for the request headers the server accepts must be refused at the
// login: written, it would get every later request of that browser a 431 before any handler
// could clear it.
func TestAdversarialOversizedSessions(t *testing.T) {
	type oversizedCase struct {
		name   string
		site   advSite
		attack func(h *harness) result
		want   advWant
	}
	login := func(user string) func(h *harness) result {
		return func(h *harness) result {
			h.idp.SetAutoLogin(user, "")
			res := h.advSend(advReq{path: "/app"})
			return h.advFollow(h.t, h.advFollow(h.t, res, http.StatusFound), http.StatusFound)
		}
	}
	impersonate := func(h *harness) result {
		return h.advSend(advReq{path: strings.TrimPrefix(h.impCallback(h.impLink("alice", "admin",
			impParams{Scope: "openid profile email"})).String(), h.siteURL)})
	}
	plain := advSite{name: "alice in 800 groups", idp: advManyGroups}
	imp := advSite{name: "alice in 800 groups, impersonation on", cfg: advImp(ImpersonationConfig{Confirm: boolPtr(false)}), idp: advManyGroups}
	confirm := advSite{name: "alice in 800 groups, impersonation with confirmation", cfg: advImp(ImpersonationConfig{}), idp: advManyGroups}
	advEach(t, []oversizedCase{
		{"bob's ordinary login (control)", plain, login("bob"), advWant{status: http.StatusSeeOther, events: evLogin}},
		{"alice's ordinary login", plain, login("alice"),
			advWant{status: http.StatusBadGateway, events: evLoginFailed, reason: "session too large"}},
		{"alice impersonated", imp, impersonate,
			advWant{status: http.StatusBadGateway, events: evLoginFailed, reason: "session too large"}},
		{"alice impersonated, at the confirmation", confirm, impersonate,
			advWant{status: http.StatusBadGateway, events: evImpersonationDenied, reason: "too large"}},
	}, func(c oversizedCase) (advSite, string) { return c.site, c.name }, func(t *testing.T, h *harness, c oversizedCase) {
		m := h.advMark()
		res := c.attack(h)
		h.advCheck(m, res, c.want)
		for _, path := range []string{"/app", "/oauth2/logout", "/oauth2/userinfo"} {
			if got := h.advSend(advReq{path: path}); got.status == http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%s afterwards: %d", path, got.status)
			}
		}
	})
}
