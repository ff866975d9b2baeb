package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
	"go.uber.org/zap"
)

func TestStripRemovesEveryManagedHeaderInEverySpelling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      HeadersConfig
		incoming http.Header // keys exactly as a client may spell them
		kept     []string
	}{
		{
			name: "the default headers go in any case and with underscores",
			incoming: http.Header{
				"x-forwarded-user":               {"evil"},
				"X_Forwarded_User":               {"evil"},
				"X-FORWARDED-USER":               {"evil"},
				"X-Forwarded-User":               {"evil", "evil2"},
				"x_forwarded_email":              {"ceo@example.com"},
				"X-Forwarded-Preferred-Username": {"ceo"},
				"X-FORWARDED-GROUPS":             {"admins"},
				"x-forwarded-impersonated":       {"false"},
				"X_FORWARDED_IMPERSONATOR":       {"nobody"},
				"X-Forwarded-Impersonator_Email": {"nobody@example.com"},
				"X.Forwarded.User":               {"evil"},
				"x.forwarded_impersonated":       {"false"},
				"Accept":                         {"text/html"},
				"X-Forwarded-For":                {"203.0.113.9"},
				"X-Forwarded-Proto":              {"https"},
				"X-Forwarded-Users":              {"similar but not managed"},
				"X-Forwarded-User-Agent":         {"similar but not managed"},
				"Authorization":                  {"Bearer the-clients-own"},
			},
			kept: []string{"Accept", "Authorization", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-User-Agent", "X-Forwarded-Users"},
		},
		{
			name: "renamed headers go, and so do the defaults they replace, even when off",
			cfg:  HeadersConfig{User: "X-Remote-User", Email: "off", Groups: "x-remote-groups"},
			incoming: http.Header{
				"x_remote_user":      {"evil"},
				"X-REMOTE-GROUPS":    {"admins"},
				"X-Forwarded-User":   {"evil"},
				"X-Forwarded-Email":  {"evil@example.com"},
				"x-forwarded-groups": {"admins"},
				"X-Remote-Email":     {"not managed"},
			},
			kept: []string{"X-Remote-Email"},
		},
		{
			name: "Authorization goes when the access token is sent in it",
			cfg:  HeadersConfig{AccessToken: "Authorization"},
			incoming: http.Header{
				"authorization": {"Bearer forged"},
				"Authorization": {"Bearer forged"},
				"Cookie":        {"a=1"},
			},
			kept: []string{"Cookie"},
		},
		{
			name: "token headers with their own names go in any spelling",
			cfg:  HeadersConfig{AccessToken: "X-Access-Token", IDToken: "X-Id-Token"},
			incoming: http.Header{
				"x_access_token": {"forged"},
				"X-ID-TOKEN":     {"forged"},
				"Authorization":  {"Basic kept"},
			},
			kept: []string{"Authorization"},
		},
		{
			name: "claim headers go in any spelling",
			cfg:  HeadersConfig{Claims: []HeaderClaim{{Claim: "department", Header: "X-Department"}, {Claim: "org.unit", Header: "x-org-unit"}}},
			incoming: http.Header{
				"x-department": {"forged"},
				"X_DEPARTMENT": {"forged"},
				"X-Org_Unit":   {"forged"},
				"X-Dept":       {"kept"},
			},
			kept: []string{"X-Dept"},
		},
		{
			name:     "a request without managed headers is left alone",
			incoming: http.Header{"Accept": {"*/*"}, "Cookie": {"a=1"}},
			kept:     []string{"Accept", "Cookie"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newHeaderPlan(&tc.cfg)
			h := tc.incoming.Clone()
			p.strip(h)
			var got []string
			for k := range h {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.kept) {
				t.Fatalf("after strip the request has %v, want %v", got, tc.kept)
			}
			for _, k := range got {
				if !slices.Equal(h[k], tc.incoming[k]) {
					t.Errorf("strip changed %s from %q to %q", k, tc.incoming[k], h[k])
				}
			}
		})
	}
}

func TestNewHeaderPlanManagesTheDefaultsAndEveryConfiguredName(t *testing.T) {
	t.Parallel()
	p := newHeaderPlan(&HeadersConfig{User: "X-Remote-User", AccessToken: "authorization",
		Claims: []HeaderClaim{{Claim: "department", Header: "x-department"}}})
	want := []string{"X-Remote-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
		"X-Forwarded-Impersonated", "X-Forwarded-Impersonator", "X-Forwarded-Impersonator-Email", "Authorization",
		"X-Forwarded-User", "X-Forwarded-Impersonator-Email-Unverified", "X-Forwarded-Scopes", "X-Identity-Assertion", "X-Department"}
	if !slices.Equal(p.managed, want) {
		t.Fatalf("managed %q, want %q", p.managed, want)
	}
	if !p.bearer || p.accessToken != "Authorization" || p.idToken != "" {
		t.Errorf("plan %+v: want bearer Authorization and no ID token header", p)
	}
}

func TestSetWritesTheSessionsIdentity(t *testing.T) {
	t.Parallel()
	plain := &session.Session{
		ID: "sid", Subject: "auth0|alice", Email: "alice@example.com", PreferredUsername: "alice",
		Groups: []string{"staff", "admins"}, Claims: []session.Claim{{Name: "department", Value: "engineering"}},
		AccessToken: "at-for-api", TokenAudience: "https://api.example.com", IDToken: "id.token.jwt",
	}
	impersonated := &session.Session{
		ID: "sid2", Subject: "auth0|bob", Email: "bob@example.com", Impersonated: true,
		ImpersonatorID: "auth0|admin", ImpersonatorEmail: "admin@example.com",
		AccessToken: "at-userinfo-only", TokenAudience: "https://api.example.com",
	}
	vouched := &session.Session{ID: "sid5", Subject: "auth0|bob", Impersonated: true,
		ImpersonatorID: "auth0|admin", ImpersonatorEmail: "admin@example.com", ImpersonatorEmailVerified: true}
	userinfoOnly := &session.Session{ID: "sid3", Subject: "auth0|carol", AccessToken: "at-opaque"}
	hostile := &session.Session{ID: "sid4", Subject: "auth0|x\r\nX-Evil: 1", Email: "x@example.com\x00", PreferredUsername: "tab\there",
		Groups: []string{"a\nb"}, Impersonated: true, ImpersonatorID: "adm\x7fin", ImpersonatorEmail: "e\r@example.com"}
	for _, tc := range []struct {
		name string
		cfg  HeadersConfig
		s    *session.Session
		want http.Header
	}{
		{
			name: "a plain session sets the default headers, groups joined with commas",
			s:    plain,
			want: http.Header{
				"X-Forwarded-User": {"auth0|alice"}, "X-Forwarded-Email": {"alice@example.com"},
				"X-Forwarded-Preferred-Username": {"alice"}, "X-Forwarded-Groups": {"staff,admins"},
				"X-Forwarded-Impersonated": {"false"},
			},
		},
		{
			name: "the access token goes in Authorization with Bearer, the ID token and a claim in theirs",
			cfg: HeadersConfig{AccessToken: "Authorization", IDToken: "X-Id-Token",
				Claims: []HeaderClaim{{Claim: "department", Header: "X-Department"}, {Claim: "missing", Header: "X-Missing"}}},
			s: plain,
			want: http.Header{
				"X-Forwarded-User": {"auth0|alice"}, "X-Forwarded-Email": {"alice@example.com"},
				"X-Forwarded-Preferred-Username": {"alice"}, "X-Forwarded-Groups": {"staff,admins"},
				"X-Forwarded-Impersonated": {"false"}, "Authorization": {"Bearer at-for-api"},
				"X-Id-Token": {"id.token.jwt"}, "X-Department": {"engineering"},
			},
		},
		{
			name: "an access token header of another name gets the bare token",
			cfg:  HeadersConfig{AccessToken: "X-Access-Token", User: "X-User", Email: "off", PreferredUsername: "off", Groups: "off", Impersonated: "off"},
			s:    plain,
			want: http.Header{"X-User": {"auth0|alice"}, "X-Access-Token": {"at-for-api"}},
		},
		{
			name: "an impersonated session names its impersonator and never forwards its access token",
			cfg:  HeadersConfig{AccessToken: "Authorization"},
			s:    impersonated,
			want: http.Header{
				"X-Forwarded-User": {"auth0|bob"}, "X-Forwarded-Email": {"bob@example.com"},
				"X-Forwarded-Impersonated": {"true"}, "X-Forwarded-Impersonator": {"auth0|admin"},
				"X-Forwarded-Impersonator-Email-Unverified": {"admin@example.com"},
			},
		},
		{
			name: "an impersonator email something vouches for goes in its own header",
			cfg:  HeadersConfig{},
			s:    vouched,
			want: http.Header{
				"X-Forwarded-User": {"auth0|bob"}, "X-Forwarded-Impersonated": {"true"}, "X-Forwarded-Impersonator": {"auth0|admin"},
				"X-Forwarded-Impersonator-Email": {"admin@example.com"},
			},
		},
		{
			name: "a userinfo-only access token is never forwarded",
			cfg:  HeadersConfig{AccessToken: "Authorization"},
			s:    userinfoOnly,
			want: http.Header{"X-Forwarded-User": {"auth0|carol"}, "X-Forwarded-Impersonated": {"false"}},
		},
		{
			name: "control characters in values are replaced by spaces",
			s:    hostile,
			want: http.Header{
				"X-Forwarded-User": {"auth0|x  X-Evil: 1"}, "X-Forwarded-Email": {"x@example.com "},
				"X-Forwarded-Preferred-Username": {"tab here"}, "X-Forwarded-Groups": {"a b"},
				"X-Forwarded-Impersonated": {"true"}, "X-Forwarded-Impersonator": {"adm in"},
				"X-Forwarded-Impersonator-Email-Unverified": {"e @example.com"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newHeaderPlan(&tc.cfg)
			h := http.Header{}
			p.set(h, tc.s)
			if !reflect.DeepEqual(h, tc.want) {
				t.Fatalf("set wrote\n %q\nwant\n %q", h, tc.want)
			}
		})
	}
}

func TestSetValuesDoNotAliasEachOther(t *testing.T) {
	t.Parallel()
	p := newHeaderPlan(&HeadersConfig{})
	h := http.Header{}
	p.set(h, fullSession())
	h.Add("X-Forwarded-User", "appended")
	if got := h.Values("X-Forwarded-Email"); !slices.Equal(got, []string{"alice@example.com"}) {
		t.Fatalf("appending to one header changed another: email %q", got)
	}
}

func TestPlaceholdersPublishTheSession(t *testing.T) {
	t.Parallel()
	withAudience := &session.Session{
		ID: "sid-1", Subject: "auth0|alice", Email: "alice@example.com", Name: "Alice A.",
		PreferredUsername: "alice", Groups: []string{"staff", "admins"},
		Claims:        []session.Claim{{Name: "department", Value: "engineering"}, {Name: "https://example.com/tier", Value: "gold"}},
		TokenAudience: "https://api.example.com",
	}
	impersonated := &session.Session{
		ID: "sid-2", Subject: "auth0|bob", Impersonated: true,
		ImpersonatorID: "auth0|admin", ImpersonatorEmail: "admin@example.com",
	}
	for _, tc := range []struct {
		name string
		s    *session.Session
		want map[string]string // placeholder key → its value
	}{
		{"a session with an audience publishes every placeholder", withAudience, map[string]string{
			"http.auth.user.id":                              "auth0|alice",
			"http.auth.user.email":                           "alice@example.com",
			"http.auth.user.name":                            "Alice A.",
			"http.auth.user.preferred_username":              "alice",
			"http.auth.user.groups":                          "staff,admins",
			"http.auth.user.impersonated":                    "false",
			"http.auth.user.impersonator.id":                 "",
			"http.auth.user.impersonator.email":              "",
			"http.auth.user.session_id":                      "sid-1",
			"http.auth.user.token_audience":                  "https://api.example.com",
			"http.auth.user.claims.department":               "engineering",
			"http.auth.user.claims.https://example.com/tier": "gold",
		}},
		{"an impersonated session publishes its impersonator and a userinfo-only audience", impersonated, map[string]string{
			"http.auth.user.id":                            "auth0|bob",
			"http.auth.user.groups":                        "",
			"http.auth.user.impersonated":                  "true",
			"http.auth.user.impersonator.id":               "auth0|admin",
			"http.auth.user.impersonator.email":            "",
			"http.auth.user.impersonator.email_unverified": "admin@example.com",
			"http.auth.user.session_id":                    "sid-2",
			"http.auth.user.token_audience":                "userinfo",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repl := caddy.NewReplacer()
			publishPlaceholders(repl, tc.s)
			for key, want := range tc.want {
				v, ok := repl.Get(key)
				if !ok {
					t.Errorf("{%s} is unknown, want %q", key, want)
					continue
				}
				if got, _ := v.(string); got != want {
					t.Errorf("{%s} = %#v, want %q", key, v, want)
				}
			}
			for _, key := range []string{"http.auth.user.claims.not_kept", "http.auth.user.unknown", "http.auth.user.access_token",
				"http.auth.user.", "http.auth.userid", "http.auth.user.claims."} {
				if v, ok := repl.Get(key); ok {
					t.Errorf("{%s} is known (%#v), want unknown", key, v)
				}
			}
			if got := repl.ReplaceAll("user={http.auth.user.id} via={http.auth.user.token_audience}", "-"); got != "user="+tc.want["http.auth.user.id"]+" via="+tc.want["http.auth.user.token_audience"] {
				t.Errorf("ReplaceAll = %q", got)
			}
		})
	}
}

// hotPathHandler is a Handler with the fields Provision would set for the authenticated
// request: sealer, cookie jar, header plan, endpoint prefix, clock and loggers.
func hotPathHandler(tb testing.TB) *Handler {
	tb.Helper()
	h := &Handler{
		Issuer:          "https://idp.example.com/",
		ClientID:        "app",
		RedirectURI:     "/oauth2/callback",
		SessionLifetime: caddy.Duration(12 * time.Hour),
		Unauthenticated: "redirect",
		Headers:         &HeadersConfig{Claims: []HeaderClaim{{Claim: "department", Header: "X-Department"}}},
		sealer:          unitSealer(tb, unitSecretNew),
		jar:             session.NewJar("_oidc_auth", "", true, http.SameSiteLaxMode, time.Now),
		prefix:          "/oauth2/",
		now:             func() time.Time { return unitNow },
		logger:          zap.NewNop(),
		audit:           zap.NewNop(),
		store:           store.NewMemory(nil),
	}
	h.headers = newHeaderPlan(h.Headers)
	h.keep = keptClaims(h.headers, nil)
	return h
}

// hotPathSession is a typical signed-in user's session, sealed as its cookie.
func hotPathSession(h *Handler) (*session.Session, string) {
	s := &session.Session{
		ID: "k3J9xQ2mN8pL5vR1tY7wZa", Subject: "auth0|5f1c2d3e4f5a6b7c8d9e0f1a", Email: "alice@example.com",
		EmailVerified: true, Name: "Alice Example", PreferredUsername: "alice", Groups: []string{"staff", "engineering"},
		Claims: []session.Claim{{Name: "department", Value: "engineering"}}, Created: unitNow.Add(-time.Hour),
		LastSeen: unitNow.Add(-time.Minute), Expires: unitNow.Add(11 * time.Hour),
	}
	if h.ServerSideSessions {
		s.Provider = h.provKey
		sealed, until := h.sealSession(session.PurposeSession, s)
		if err := h.store.PutSession(context.Background(), s.ID, []byte(sealed), until); err != nil {
			panic(err)
		}
		return s, h.jar.Base + "=" + h.sealer.Seal(session.PurposeTicket, []byte(s.ID), until)
	}
	return s, sealedSessionCookie(h, s)
}

// discardWriter is a ResponseWriter that keeps nothing; the authenticated path writes nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func TestServeHTTPLetsAnAuthenticatedRequestThroughWithItsIdentity(t *testing.T) {
	t.Parallel()
	h := hotPathHandler(t)
	_, cookie := hotPathSession(h)
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/dashboard", nil)
	r.Header["Cookie"] = []string{"theme=dark; " + cookie + "; lang=en"}
	r.Header["x_forwarded_user"] = []string{"forged"}
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { seen = r; return nil })
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if seen == nil {
		t.Fatalf("next was not called; status %d, body %q", rec.Code, rec.Body.String())
	}
	want := http.Header{
		"Cookie":                         {"theme=dark; lang=en"},
		"X-Forwarded-User":               {"auth0|5f1c2d3e4f5a6b7c8d9e0f1a"},
		"X-Forwarded-Email":              {"alice@example.com"},
		"X-Forwarded-Preferred-Username": {"alice"},
		"X-Forwarded-Groups":             {"staff,engineering"},
		"X-Forwarded-Impersonated":       {"false"},
		"X-Department":                   {"engineering"},
	}
	if !reflect.DeepEqual(seen.Header, want) {
		t.Errorf("upstream headers\n %q\nwant\n %q", seen.Header, want)
	}
	if got := repl.ReplaceAll("{http.auth.user.email}", ""); got != "alice@example.com" {
		t.Errorf("{http.auth.user.email} = %q", got)
	}
	if len(rec.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("an authenticated request without idle timeout rewrote cookies: %q", rec.Header().Values("Set-Cookie"))
	}
}

// BenchmarkAuthenticatedRequest measures the hot path: a request with a valid session cookie
// through ServeHTTP to a no-op next handler. "setup" measures building the request as Caddy
// would (replacer, PrepareRequest) alone; the module's own share is the difference.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	h := hotPathHandler(b)
	benchServeHTTP(b, h, "setup")
}

// BenchmarkAuthenticatedRequestThreeChunks is the authenticated path of a large session (many
// groups), sealed over three cookies.
func BenchmarkAuthenticatedRequestThreeChunks(b *testing.B) {
	h := hotPathHandler(b)
	s, _ := hotPathSession(h)
	for i := range 230 {
		s.Groups = append(s.Groups, fmt.Sprintf("group-%04d-of-a-large-directory", i))
	}
	s.Provider = h.provKey
	sealed, until := h.sealSession(session.PurposeSession, s)
	rec := httptest.NewRecorder()
	if !h.jar.SetChunked(rec, httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil), h.jar.Base, sealed, until) {
		b.Fatal("the session does not fit in cookies")
	}
	var pairs []string
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 && c.Value != "" { // not the clearing of chunks it does not need
			pairs = append(pairs, c.Name+"="+c.Value)
		}
	}
	if len(pairs) != 3 {
		b.Fatalf("%d cookies, want 3", len(pairs))
	}
	benchServeHTTPCookie(b, h, "", strings.Join(pairs, "; "))
}

// benchServeHTTP measures h's ServeHTTP on an authenticated request, and, when setup is not
// empty, Caddy's request setup alone under that name.
func benchServeHTTP(b *testing.B, h *Handler, setup string) {
	_, cookie := hotPathSession(h)
	benchServeHTTPCookie(b, h, setup, cookie)
}

// benchServeHTTPCookie is benchServeHTTP with the session's cookies given.
func benchServeHTTPCookie(b *testing.B, h *Handler, setup, cookie string) {
	cookieValue := "theme=dark; " + cookie + "; lang=en"
	cookieHeader := []string{cookieValue}
	base := httptest.NewRequest(http.MethodGet, "https://app.example.com/dashboard?tab=1", nil)
	base.Header.Set("Accept", "text/html")
	base.Header.Set("User-Agent", "bench")
	w := &discardWriter{h: http.Header{}}
	var called int
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called++; return nil })

	// reset undoes what the previous iteration's ServeHTTP changed in the shared header map,
	// without allocating.
	reset := func() {
		for _, name := range h.headers.managed {
			delete(base.Header, name)
		}
		cookieHeader[0] = cookieValue // ServeHTTP rewrites the request's own slice
		base.Header["Cookie"] = cookieHeader
	}

	if setup != "" {
		b.Run(setup, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				reset()
				r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
				_ = next.ServeHTTP(w, r)
			}
		})
	}
	b.Run("setup and ServeHTTP", func(b *testing.B) {
		b.ReportAllocs()
		called = 0
		for b.Loop() {
			reset()
			r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
		if called == 0 || base.Header.Get("X-Forwarded-User") != "auth0|5f1c2d3e4f5a6b7c8d9e0f1a" {
			b.Fatalf("the request was not authenticated: next called %d times, headers %q", called, base.Header)
		}
	})
}
