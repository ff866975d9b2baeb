package session

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requestWithCookies is a request whose Cookie header lines are exactly lines.
func requestWithCookies(lines ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	if len(lines) > 0 {
		r.Header["Cookie"] = lines
	}
	return r
}

// setCookies returns the Set-Cookie headers of a recorded response, parsed, by name.
func setCookies(t *testing.T, rec *httptest.ResponseRecorder) map[string]*http.Cookie {
	t.Helper()
	out := map[string]*http.Cookie{}
	for _, c := range rec.Result().Cookies() {
		if _, dup := out[c.Name]; dup {
			t.Fatalf("cookie %s is set twice in one response", c.Name)
		}
		out[c.Name] = c
	}
	return out
}

// jarConfig is the cookie configuration as an operator writes it.
type jarConfig struct {
	Name, Domain, SameSite string
	Insecure               bool
}

func testJar(c *jarConfig, now func() time.Time) Jar {
	ss := map[string]http.SameSite{"": http.SameSiteLaxMode, "lax": http.SameSiteLaxMode,
		"strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}[c.SameSite]
	return NewJar(c.Name, c.Domain, !c.Insecure, ss, now)
}

func TestNewCookieJarNamesAndAttributes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  jarConfig
		want Jar
	}{
		{"a host-only secure cookie takes the __Host- prefix", jarConfig{Name: "_oidc_auth"},
			Jar{Base: "__Host-oidc_auth", secure: true, SameSite: http.SameSiteLaxMode}},
		{"a name without underscores takes the prefix as it is", jarConfig{Name: "session"},
			Jar{Base: "__Host-session", secure: true, SameSite: http.SameSiteLaxMode}},
		{"a cookie with a domain takes no prefix", jarConfig{Name: "_oidc_auth", Domain: "example.com"},
			Jar{Base: "_oidc_auth", domain: "example.com", secure: true, SameSite: http.SameSiteLaxMode}},
		{"an insecure cookie takes no prefix", jarConfig{Name: "_oidc_auth", Insecure: true},
			Jar{Base: "_oidc_auth", secure: false, SameSite: http.SameSiteLaxMode}},
		{"same_site strict is kept", jarConfig{Name: "_oidc_auth", SameSite: "strict"},
			Jar{Base: "__Host-oidc_auth", secure: true, SameSite: http.SameSiteStrictMode}},
		{"a name that already carries __Host- is not prefixed twice", jarConfig{Name: "__Host-sess"},
			Jar{Base: "__Host-sess", secure: true, SameSite: http.SameSiteLaxMode}},
		{"same_site none is kept", jarConfig{Name: "_oidc_auth", SameSite: "none"},
			Jar{Base: "__Host-oidc_auth", secure: true, SameSite: http.SameSiteNoneMode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := testJar(&tc.cfg, time.Now)
			if got.Base != tc.want.Base || got.domain != tc.want.domain || got.secure != tc.want.secure ||
				got.SameSite != tc.want.SameSite {
				t.Fatalf("NewJar(%+v) = %+v, want %+v", tc.cfg, got, tc.want)
			}
		})
	}
}

func TestTheModuleCookiesAllShareTheSessionCookiesName(t *testing.T) {
	j := testJar(&jarConfig{Name: "_oidc_auth"}, time.Now)
	for _, tc := range []struct{ got, want string }{
		{j.AttemptPrefix(), "__Host-oidc_auth_att_"},
		{j.ConfirmName(), "__Host-oidc_auth_confirm"},
		{j.StashName(), "__Host-oidc_auth_stash"},
	} {
		if tc.got != tc.want {
			t.Errorf("name %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSetCookieAttributes(t *testing.T) {
	expires := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name       string
		cfg        jarConfig
		wantHeader string // the Set-Cookie header without its Expires and Max-Age
	}{
		{"a host-only cookie is __Host-, Secure, with Path / and no Domain", jarConfig{Name: "_oidc_auth"},
			"__Host-oidc_auth=v; Path=/; HttpOnly; Secure; SameSite=Lax"},
		{"a domain cookie names its Domain", jarConfig{Name: "_oidc_auth", Domain: "example.com"},
			"_oidc_auth=v; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax"},
		{"an insecure cookie has no Secure attribute", jarConfig{Name: "_oidc_auth", Insecure: true, SameSite: "strict"},
			"_oidc_auth=v; Path=/; HttpOnly; SameSite=Strict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := testJar(&tc.cfg, time.Now)
			rec := httptest.NewRecorder()
			j.Set(rec, j.Base, "v", expires, j.SameSite)
			h := rec.Header().Values("Set-Cookie")
			if len(h) != 1 {
				t.Fatalf("Set-Cookie %q, want one", h)
			}
			var kept []string
			for _, attr := range strings.Split(h[0], "; ") {
				if !strings.HasPrefix(attr, "Expires=") && !strings.HasPrefix(attr, "Max-Age=") {
					kept = append(kept, attr)
				}
			}
			if got := strings.Join(kept, "; "); got != tc.wantHeader {
				t.Errorf("Set-Cookie %q, want %q", got, tc.wantHeader)
			}
			c := setCookies(t, rec)[j.Base]
			if c == nil || !c.Expires.Equal(expires.UTC().Truncate(time.Second)) || c.MaxAge < 3590 || c.MaxAge > 3600 {
				t.Errorf("cookie %+v, want Expires %v and Max-Age about 3600", c, expires.UTC())
			}
		})
	}
}

func TestALongValueIsWrittenInChunksAndReadBack(t *testing.T) {
	j := testJar(&jarConfig{Name: "_oidc_auth"}, time.Now)
	value := strings.Repeat("a", ChunkSize) + strings.Repeat("b", ChunkSize) + "tail"
	rec := httptest.NewRecorder()
	j.SetChunked(rec, requestWithCookies(), j.Base, value, time.Now().Add(time.Hour))
	got := setCookies(t, rec)

	want := map[string]string{
		"__Host-oidc_auth_0": strings.Repeat("a", ChunkSize),
		"__Host-oidc_auth_1": strings.Repeat("b", ChunkSize),
		"__Host-oidc_auth_2": "tail",
	}
	// Besides the chunks: clears of the whole name and of every later chunk name.
	if len(got) != len(want)+1+MaxChunks-3 {
		t.Fatalf("set %d cookies (%v), want %d chunks and %d clears", len(got), names(got), len(want), 1+MaxChunks-3)
	}
	for name, v := range want {
		c := got[name]
		if c == nil || c.Value != v || c.MaxAge <= 0 || !c.Secure || !c.HttpOnly || c.Path != "/" {
			t.Errorf("chunk %s = %+v, want value of %d bytes, live, Secure, HttpOnly, Path /", name, c, len(v))
		}
	}

	t.Run("the chunks are reassembled in order", func(t *testing.T) {
		// The browser may send them in any order.
		r := requestWithCookies("__Host-oidc_auth_2=tail; other=1", "__Host-oidc_auth_1="+want["__Host-oidc_auth_1"]+"; __Host-oidc_auth_0="+want["__Host-oidc_auth_0"])
		v, ok := ReadChunked(r, j.Base)
		if !ok || v != value {
			t.Fatalf("ReadChunked = (%d bytes, %v), want (%d bytes, true)", len(v), ok, len(value))
		}
	})
	t.Run("a value of exactly one chunk is written whole", func(t *testing.T) {
		rec := httptest.NewRecorder()
		j.SetChunked(rec, requestWithCookies("__Host-oidc_auth=old"), j.Base, strings.Repeat("c", ChunkSize), time.Now().Add(time.Hour))
		if got := names(setCookies(t, rec)); !reflect.DeepEqual(got, []string{"__Host-oidc_auth"}) {
			t.Fatalf("set %v, want the whole cookie only", got)
		}
	})
}

func TestReadChunked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		want   string
		wantOK bool
	}{
		{"a whole cookie is read", []string{"__Host-oidc_auth=whole"}, "whole", true},
		{"a whole cookie wins over chunks", []string{"__Host-oidc_auth_0=chunk; __Host-oidc_auth=whole"}, "whole", true},
		{"chunks are joined", []string{"__Host-oidc_auth_0=ab; __Host-oidc_auth_1=cd"}, "abcd", true},
		{"reading stops at the first missing chunk", []string{"__Host-oidc_auth_0=ab; __Host-oidc_auth_2=ef"}, "ab", true},
		{"chunks without chunk 0 are no value", []string{"__Host-oidc_auth_1=cd"}, "", false},
		{"no cookie is no value", nil, "", false},
		{"chunks past the maximum are not read", []string{func() string {
			var parts []string
			for i := 0; i <= MaxChunks; i++ {
				parts = append(parts, "__Host-oidc_auth_"+string(rune('0'+i))+"=x")
			}
			return strings.Join(parts, "; ")
		}()}, strings.Repeat("x", MaxChunks), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ReadChunked(requestWithCookies(tc.lines...), "__Host-oidc_auth")
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("ReadChunked = (%q, %v), want (%q, %v)", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// chunkClears is what a chunked write of n chunks clears: the whole name and chunks n and later.
func chunkClears(n int) []string {
	out := []string{"__Host-oidc_auth"}
	for i := n; i < MaxChunks; i++ {
		out = append(out, "__Host-oidc_auth_"+strconv.Itoa(i))
	}
	return out
}

func TestWritingClearsTheChunksThatNoLongerApply(t *testing.T) {
	j := testJar(&jarConfig{Name: "_oidc_auth"}, time.Now)
	long := strings.Repeat("l", 2*ChunkSize+1)
	mid := strings.Repeat("m", ChunkSize+1)
	for _, tc := range []struct {
		name        string
		carried     []string // cookies the request carries
		value       string
		wantLive    []string
		wantCleared []string
	}{
		{"a short value after a long one clears every chunk",
			[]string{"__Host-oidc_auth_0=a; __Host-oidc_auth_1=b; __Host-oidc_auth_2=c"}, "short",
			[]string{"__Host-oidc_auth"}, chunkClears(0)[1:]},
		{"a short value replacing a short one clears only the chunks the request carries",
			[]string{"__Host-oidc_auth=old; __Host-oidc_auth_0=stale"}, "short",
			[]string{"__Host-oidc_auth"}, []string{"__Host-oidc_auth_0"}},
		{"a long value after a short one clears the whole cookie and every later chunk",
			[]string{"__Host-oidc_auth=old"}, long,
			[]string{"__Host-oidc_auth_0", "__Host-oidc_auth_1", "__Host-oidc_auth_2"}, chunkClears(3)},
		{"a two-chunk value after a three-chunk one clears the third chunk and later",
			[]string{"__Host-oidc_auth_0=a; __Host-oidc_auth_1=b; __Host-oidc_auth_2=c"}, mid,
			[]string{"__Host-oidc_auth_0", "__Host-oidc_auth_1"}, chunkClears(2)},
		{"a chunked value clears the whole cookie even when a cross-site request did not show it",
			nil, mid,
			[]string{"__Host-oidc_auth_0", "__Host-oidc_auth_1"}, chunkClears(2)},
		{"a request that shows no cookie (sent cross-site) gets every chunk name cleared",
			nil, "short", []string{"__Host-oidc_auth"}, chunkClears(0)[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			j.SetChunked(rec, requestWithCookies(tc.carried...), j.Base, tc.value, time.Now().Add(time.Hour))
			live, cleared := liveAndCleared(t, rec)
			if !reflect.DeepEqual(live, tc.wantLive) || !reflect.DeepEqual(cleared, tc.wantCleared) {
				t.Fatalf("live %v, cleared %v; want live %v, cleared %v", live, cleared, tc.wantLive, tc.wantCleared)
			}
			for _, line := range rec.Header().Values("Set-Cookie") {
				if strings.HasSuffix(strings.SplitN(line, ";", 2)[0], "=") && !strings.Contains(line, "Max-Age=0") {
					t.Errorf("a clearing Set-Cookie without Max-Age=0: %q", line)
				}
			}
		})
	}
	t.Run("ClearChunked clears the whole cookie and every chunk carried", func(t *testing.T) {
		rec := httptest.NewRecorder()
		j.ClearChunked(rec, requestWithCookies("__Host-oidc_auth=x; __Host-oidc_auth_0=a; __Host-oidc_auth_1=b; keep=1"), j.Base)
		live, cleared := liveAndCleared(t, rec)
		if want := []string{"__Host-oidc_auth", "__Host-oidc_auth_0", "__Host-oidc_auth_1"}; len(live) != 0 || !reflect.DeepEqual(cleared, want) {
			t.Fatalf("live %v, cleared %v; want cleared %v", live, cleared, want)
		}
	})
}

// liveAndCleared sorts a response's Set-Cookie names into those set and those cleared
// (Max-Age -1 once parsed, Max-Age=0 on the wire), in the order written.
func liveAndCleared(t *testing.T, rec *httptest.ResponseRecorder) (live, cleared []string) {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			if c.Value != "" {
				t.Errorf("cleared cookie %s keeps the value %q", c.Name, c.Value)
			}
			cleared = append(cleared, c.Name)
		} else {
			live = append(live, c.Name)
		}
	}
	return live, cleared
}

func names(cs map[string]*http.Cookie) []string {
	var out []string
	for n := range cs {
		out = append(out, n)
	}
	return out
}

func TestCookieValueFindsExactlyTheNamedCookie(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		cookie string
		want   string
		wantOK bool
	}{
		{"a cookie among others is found", []string{"a=1; _oidc_auth=xyz; b=2"}, "_oidc_auth", "xyz", true},
		{"a chunk name is not the cookie", []string{"_oidc_auth_0=chunk"}, "_oidc_auth", "", false},
		{"the cookie is found after its chunk", []string{"_oidc_auth_0=chunk; _oidc_auth=whole"}, "_oidc_auth", "whole", true},
		{"the chunk is found by its own name", []string{"_oidc_auth=whole; _oidc_auth_0=chunk"}, "_oidc_auth_0", "chunk", true},
		{"a longer name is not the cookie", []string{"_oidc_authx=1"}, "_oidc_auth", "", false},
		{"a name with a prefix is not the cookie", []string{"x_oidc_auth=1"}, "_oidc_auth", "", false},
		{"a quoted value is unquoted", []string{`_oidc_auth="abc"`}, "_oidc_auth", "abc", true},
		{"a lone quote is kept", []string{`_oidc_auth="`}, "_oidc_auth", `"`, true},
		{"spaces around a pair are ignored", []string{"  a=1 ;   _oidc_auth=abc   ; b=2"}, "_oidc_auth", "abc", true},
		{"no space after the separator is fine", []string{"a=1;_oidc_auth=abc"}, "_oidc_auth", "abc", true},
		{"an empty value is found", []string{"_oidc_auth=; b=2"}, "_oidc_auth", "", true},
		{"a value containing = is kept whole", []string{"_oidc_auth=a=b"}, "_oidc_auth", "a=b", true},
		{"the first of two is taken", []string{"_oidc_auth=first; _oidc_auth=second"}, "_oidc_auth", "first", true},
		{"a later Cookie header line is searched", []string{"a=1", "_oidc_auth=second-line"}, "_oidc_auth", "second-line", true},
		{"a pair without = is skipped", []string{"_oidc_auth; _oidc_auth=v"}, "_oidc_auth", "v", true},
		{"names are case-sensitive", []string{"_OIDC_AUTH=v"}, "_oidc_auth", "", false},
		{"no Cookie header finds nothing", nil, "_oidc_auth", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := CookieValue(requestWithCookies(tc.lines...), tc.cookie)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("CookieValue(%q) = (%q, %v), want (%q, %v)", tc.cookie, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCookiesWithPrefixListsTheAttemptCookies(t *testing.T) {
	r := requestWithCookies("__Host-oidc_auth_att_AAA=1; __Host-oidc_auth=s; x=2", "__Host-oidc_auth_att_BBB=3")
	got := CookiesWithPrefix(r, "__Host-oidc_auth_att_")
	want := [][2]string{{"__Host-oidc_auth_att_AAA", "1"}, {"__Host-oidc_auth_att_BBB", "3"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CookiesWithPrefix = %v, want %v", got, want)
	}
}

func TestWithoutOwnCookiesRemovesOnlyTheModulesCookies(t *testing.T) {
	const base = "__Host-oidc_auth"
	for _, tc := range []struct {
		name        string
		lines       []string
		prefix      string
		want        string
		wantChanged bool
	}{
		{"the session cookie is removed, the others kept in order", []string{"theme=dark; __Host-oidc_auth=s; lang=en"}, base,
			"theme=dark; lang=en", true},
		{"every module cookie is removed", []string{"__Host-oidc_auth_0=a; __Host-oidc_auth_1=b; __Host-oidc_auth_att_X=c; __Host-oidc_auth_confirm=d; __Host-oidc_auth_stash=e; __Host-oidc_auth_stash_0=f; app=1"}, base,
			"app=1", true},
		{"only module cookies leave nothing", []string{"__Host-oidc_auth=s", "__Host-oidc_auth_att_Y=a"}, base, "", true},
		{"without module cookies nothing changes (and nothing is built)", []string{"a=1; b=2"}, base, "", false},
		{"several header lines are joined", []string{"a=1", "__Host-oidc_auth=s", "b=2"}, base, "a=1; b=2", true},
		{"values are kept byte for byte", []string{`q="quoted value"; e=; __Host-oidc_auth=s; eq=a=b`}, base, `q="quoted value"; e=; eq=a=b`, true},
		{"empty pairs are dropped", []string{"a=1;; ;__Host-oidc_auth=s;"}, base, "a=1", true},
		{"a cookie that ends with the name is kept", []string{"x__Host-oidc_auth=1; __Host-oidc_auth=s"}, base, "x__Host-oidc_auth=1", true},
		{"an application cookie whose name merely starts with the name is kept", []string{"_oidc_authority=app; _oidc_auth=s; _oidc_auth_0=c"}, "_oidc_auth",
			"_oidc_authority=app", true},
		{"no Cookie header is no change", nil, base, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := WithoutOwnCookies(tc.lines, tc.prefix)
			if got != tc.want || changed != tc.wantChanged {
				t.Fatalf("WithoutOwnCookies(%q) = (%q, %v), want (%q, %v)", tc.lines, got, changed, tc.want, tc.wantChanged)
			}
		})
	}
}

func TestSetChunkedRefusesAValueTooLargeToReadBack(t *testing.T) {
	j := testJar(&jarConfig{Name: "_oidc_auth"}, time.Now)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if j.SetChunked(rec, r, j.Base, strings.Repeat("a", MaxChunks*ChunkSize+1), time.Now().Add(time.Hour)) {
		t.Fatal("a value over MaxChunks chunks was written")
	}
	if n := len(rec.Result().Cookies()); n != 0 {
		t.Errorf("%d cookies set for a value that was refused", n)
	}
	if !j.SetChunked(rec, r, j.Base, strings.Repeat("a", MaxChunks*ChunkSize), time.Now().Add(time.Hour)) {
		t.Error("a value of exactly MaxChunks chunks was refused")
	}
}

func TestMaxAgeFollowsTheHandlersClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	j := testJar(&jarConfig{Name: "_oidc_auth"}, func() time.Time { return now })
	c := j.cookie("x", "v", now.Add(90*time.Second), http.SameSiteLaxMode)
	if c.MaxAge != 90 {
		t.Errorf("Max-Age %d, want 90", c.MaxAge)
	}
}
