// Tests of sid and Back-Channel Logout: who gets a logout token, when, and what it says.

package devidp

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// receiver is a client's back-channel logout endpoint that records what it is sent.
type receiver struct {
	srv    *httptest.Server
	status int
	mu     sync.Mutex
	got    []received
}

type received struct {
	path, method, contentType, token string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{status: http.StatusOK}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.URL.Path, r.Method, r.Header.Get("Content-Type"), r.PostForm.Get("logout_token")})
		status := rc.status
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) take() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	got := rc.got
	rc.got = nil
	return got
}

// newBackchannelEnv registers app's and other's back-channel URIs at rc, and a third client
// "quiet" without one.
func newBackchannelEnv(t *testing.T, rc *receiver) *env {
	return newEnv(t, func(c *Config) {
		c.Clients[0].BackchannelLogoutURI = rc.srv.URL + "/app-bc"
		c.Clients[1].BackchannelLogoutURI = rc.srv.URL + "/other-bc"
		c.Clients = append(c.Clients, Client{ID: "quiet", Secret: "s", RedirectURIs: []string{"https://quiet.example.test/cb"}})
	})
}

// sidOf signs in through the browser's session (or auto-login) at client and returns the
// ID token's sid.
func (e *env) sidOf(t *testing.T, client, callback string) (idToken, sid string) {
	t.Helper()
	resp, _ := e.authorize(t, map[string]string{"client_id": client, "redirect_uri": callback,
		"response_type": "id_token token", "nonce": "n"})
	idToken = e.redirected(t, resp, true).Get("id_token")
	sid, _ = e.verifyJWT(t, idToken)["sid"].(string)
	if sid == "" {
		t.Fatal("no sid")
	}
	return idToken, sid
}

func TestSessionID(t *testing.T) {
	e := newEnv(t, nil)
	e.signIn(t, "alice")
	_, a := e.sidOf(t, appID, appCallback)
	_, b := e.sidOf(t, "other", "https://other.example.test/cb")
	if a != b {
		t.Errorf("one browser session, two sids: %s, %s", a, b)
	}
	e.signIn(t, "alice")
	if _, c := e.sidOf(t, appID, appCallback); c == a {
		t.Error("a new sign-in kept the old sid")
	}
}

func TestBackchannelLogout(t *testing.T) {
	rc := newReceiver(t)
	e := newBackchannelEnv(t, rc)
	t.Run("discovery announces it", func(t *testing.T) {
		d := e.discovery(t)
		if d["backchannel_logout_supported"] != true || d["backchannel_logout_session_supported"] != true {
			t.Errorf("discovery %v", d)
		}
	})
	t.Run("logout at /oidc/logout posts a logout token to each client the session logged into", func(t *testing.T) {
		e.signIn(t, "alice")
		_, sid := e.sidOf(t, appID, appCallback)
		e.sidOf(t, "quiet", "https://quiet.example.test/cb")
		before := len(e.idp.BackchannelDeliveries())
		e.get(t, e.url("oidc/logout?client_id=app"))
		got := rc.take()
		if len(got) != 1 || got[0].path != "/app-bc" || got[0].method != "POST" || got[0].contentType != "application/x-www-form-urlencoded" {
			t.Fatalf("received %+v", got)
		}
		h, _, _ := jwtParts(t, got[0].token)
		c := e.verifyJWT(t, got[0].token)
		now := e.clock.Now().Unix()
		want := map[string]any{"iss": e.srv.URL + "/", "aud": appID, "sub": "auth0|alice", "sid": sid,
			"iat": float64(now), "exp": float64(now + 120),
			"events": map[string]any{backchannelEvent: map[string]any{}}}
		for k, v := range want {
			if !reflect.DeepEqual(c[k], v) {
				t.Errorf("%s = %v, want %v", k, c[k], v)
			}
		}
		if c["jti"] == nil || c["nonce"] != nil || h["typ"] != "logout+jwt" || h["kid"] == nil {
			t.Errorf("header %v claims %v", h, c)
		}
		d := e.idp.BackchannelDeliveries()
		if len(d) != before+1 || d[len(d)-1].Status != 200 || d[len(d)-1].LogoutToken != got[0].token || d[len(d)-1].SID != sid {
			t.Errorf("deliveries %+v", d[before:])
		}
	})
	t.Run("a session that logged into nothing sends nothing, and an ended one nothing again", func(t *testing.T) {
		e.adminPage(t, "alice")
		e.get(t, e.url("v2/logout"))
		e.get(t, e.url("v2/logout"))
		if got := rc.take(); len(got) != 0 {
			t.Errorf("received %+v", got)
		}
	})
	t.Run("logout at /v2/logout reaches every client of the session", func(t *testing.T) {
		e.signIn(t, "bob")
		e.sidOf(t, appID, appCallback)
		e.sidOf(t, "other", "https://other.example.test/cb")
		e.get(t, e.url("v2/logout?client_id=app"))
		var paths []string
		for _, r := range rc.take() {
			paths = append(paths, r.path)
		}
		slices.Sort(paths)
		if !slices.Equal(paths, []string{"/app-bc", "/other-bc"}) {
			t.Errorf("received at %v", paths)
		}
	})
	t.Run("without an SSO cookie /oidc/logout ends the session named by id_token_hint", func(t *testing.T) {
		e.idp.SetAutoLogin("carol", "")
		defer e.idp.SetAutoLogin("", "")
		idToken, sid := e.sidOf(t, appID, appCallback)
		e.get(t, e.url("oidc/logout?id_token_hint="+url.QueryEscape(idToken)))
		got := rc.take()
		if len(got) != 1 {
			t.Fatalf("received %+v", got)
		}
		if c := e.verifyJWT(t, got[0].token); c["sid"] != sid || c["sub"] != "auth0|carol" {
			t.Errorf("claims %v", c)
		}
	})
	t.Run("a client that fails to answer is recorded as such", func(t *testing.T) {
		rc.status = http.StatusBadRequest
		defer func() { rc.status = http.StatusOK }()
		e.signIn(t, "alice")
		e.sidOf(t, appID, appCallback)
		e.get(t, e.url("v2/logout"))
		rc.take()
		if d := e.idp.BackchannelDeliveries(); d[len(d)-1].Status != 400 || d[len(d)-1].Err != "" {
			t.Errorf("delivery %+v", d[len(d)-1])
		}
	})
}

func TestEndSession(t *testing.T) {
	rc := newReceiver(t)
	e := newBackchannelEnv(t, rc)
	e.idp.SetAutoLogin("alice", "")
	_, sid1 := e.sidOf(t, appID, appCallback)
	_, sid2 := e.sidOf(t, "other", "https://other.example.test/cb")
	e.idp.SetAutoLogin("bob", "")
	_, bobSID := e.sidOf(t, appID, appCallback)
	e.idp.SetAutoLogin("", "")
	e.signIn(t, "alice")
	_, browserSID := e.sidOf(t, appID, appCallback)
	t.Run("by user it ends every session of the user, browser ones included, and has delivered on return", func(t *testing.T) {
		if n := e.idp.EndSession("alice"); n != 3 {
			t.Errorf("ended %d sessions, want 3", n)
		}
		var sids []string
		for _, r := range rc.take() {
			sids = append(sids, e.verifyJWT(t, r.token)["sid"].(string))
		}
		want := []string{sid1, sid2, browserSID}
		slices.Sort(sids)
		slices.Sort(want)
		if !slices.Equal(sids, want) {
			t.Errorf("logout tokens for %v, want %v", sids, want)
		}
		if resp, _ := e.authorize(t, nil); resp.StatusCode != 200 {
			t.Errorf("the browser is still signed in: %d", resp.StatusCode)
		}
	})
	t.Run("by sid it ends that session only", func(t *testing.T) {
		if n := e.idp.EndSession(bobSID); n != 1 {
			t.Errorf("ended %d", n)
		}
		if got := rc.take(); len(got) != 1 || e.verifyJWT(t, got[0].token)["sub"] != "auth0|bob" {
			t.Errorf("received %+v", got)
		}
		if n := e.idp.EndSession(bobSID); n != 0 {
			t.Errorf("ended it twice")
		}
	})
	t.Run("an unknown user or sid ends nothing", func(t *testing.T) {
		if n := e.idp.EndSession("nobody"); n != 0 {
			t.Errorf("ended %d", n)
		}
	})
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestBackchannelDeliveryUsesTheConfiguredClientWithABound(t *testing.T) {
	var deadline time.Time
	var hasDeadline bool
	e := newEnv(t, func(c *Config) {
		c.Clients[0].BackchannelLogoutURI = "https://app.example.test/bc"
		c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			deadline, hasDeadline = r.Context().Deadline()
			io.Copy(io.Discard, r.Body)
			return nil, errors.New("unreachable")
		})}
	})
	e.idp.SetAutoLogin("alice", "")
	_, sid := e.sidOf(t, appID, appCallback)
	start := time.Now()
	e.idp.EndSession(sid)
	if !hasDeadline || deadline.Sub(start) > backchannelTimeout+time.Second {
		t.Errorf("delivery context deadline %v (set %v)", deadline, hasDeadline)
	}
	if d := e.idp.BackchannelDeliveries(); len(d) != 1 || d[0].Status != 0 || d[0].Err == "" || d[0].URI != "https://app.example.test/bc" {
		t.Errorf("deliveries %+v", d)
	}
}

func TestMintLogoutToken(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now().Unix()
	for _, tc := range []struct {
		name  string
		opts  []LogoutTokenOption
		check func(h, c map[string]any, sig string) bool
	}{
		{"by default it is a good logout token", nil, func(h, c map[string]any, _ string) bool {
			return h["typ"] == "logout+jwt" && c["aud"] == appID && c["sub"] == "auth0|alice" && c["sid"] == "s-1" &&
				c["events"] != nil && c["nonce"] == nil && c["exp"] == float64(now+120)
		}},
		{"with a nonce", []LogoutTokenOption{LogoutWithNonce("n")}, func(_, c map[string]any, _ string) bool { return c["nonce"] == "n" }},
		{"without the event", []LogoutTokenOption{LogoutWithoutEvent()}, func(_, c map[string]any, _ string) bool {
			_, ok := c["events"]
			return !ok
		}},
		{"for another audience", []LogoutTokenOption{LogoutAudience("other")}, func(_, c map[string]any, _ string) bool { return c["aud"] == "other" }},
		{"from another issuer", []LogoutTokenOption{LogoutIssuer(WrongIssuer)}, func(_, c map[string]any, _ string) bool { return c["iss"] == WrongIssuer }},
		{"expired", []LogoutTokenOption{LogoutExpired()}, func(_, c map[string]any, _ string) bool {
			return c["exp"].(float64) < float64(now) && c["iat"].(float64) < c["exp"].(float64)
		}},
		{"with another typ", []LogoutTokenOption{LogoutTyp("JWT")}, func(h, _ map[string]any, _ string) bool { return h["typ"] == "JWT" }},
		{"unsigned", []LogoutTokenOption{LogoutUnsigned()}, func(h, _ map[string]any, sig string) bool { return h["alg"] == "none" && sig == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := e.idp.MintLogoutToken(appID, "auth0|alice", "s-1", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			h, c, sig := jwtParts(t, tok)
			if !tc.check(h, c, sig) {
				t.Errorf("header %v claims %v", h, c)
			}
			if tc.opts == nil {
				e.verifyJWT(t, tok)
			}
		})
	}
	t.Run("an empty sub or sid is left out", func(t *testing.T) {
		tok, _ := e.idp.MintLogoutToken(appID, "", "s-1")
		if _, c, _ := jwtParts(t, tok); c["sub"] != nil || c["sid"] != "s-1" {
			t.Errorf("claims %v", c)
		}
	})
}
