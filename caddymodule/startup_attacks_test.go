package caddymodule

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// rawGet sends one HTTP/1.1 GET with the Host header exactly as given and returns the status
// line ("" when the server closed the connection without answering).
func rawGet(t *testing.T, siteURL, host, path string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(siteURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nConnection: close\r\n\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// A Host header whose port is not a number still matches the site's host matcher (Caddy
// ignores the port): the route check before a sign-in must not parse it (it once did, and
// panicked on every such request).
func TestAHostWithABadPortDoesNotPanicTheRouteCheck(t *testing.T) {
	h, log := startWithLog(t, `
	`+oidcBlock("")+`
	reverse_proxy $UPSTREAM`, nil)
	waitForLog(t, log, "the callback reaches this handler")
	host := strings.Split(strings.TrimPrefix(h.siteURL, "http://"), ":")[0]
	for _, bad := range []string{host + ":x", host + ":%zz"} {
		status := rawGet(t, h.siteURL, bad, "/")
		if !strings.HasPrefix(status, "HTTP/1.1 ") {
			t.Errorf("Host %q: the connection was dropped without an answer (%q)", bad, status)
		}
	}
	if l := log(); strings.Contains(l, "panic serving") {
		i := strings.Index(l, "panic serving")
		t.Errorf("the server panicked: %.900s", l[i:])
	}
}

// An IP allow-list in front of oidc_auth (only the office may reach the app, then it signs
// in): the route check walks the routes as the signing-in browser's own request (its address,
// connection and headers), so the office signs in; at start it does not guess.
func TestAnIPAllowListInFrontDoesNotRefuseEverySignIn(t *testing.T) {
	h, log := startWithLog(t, `
	route {
		@outside not remote_ip 127.0.0.2/32
		respond @outside "outside" 403
		`+oidcBlock("")+`
		reverse_proxy $UPSTREAM
	}`, nil)
	if l := waitForLog(t, log, "checked at each sign-in"); strings.Contains(l, "does not reach this oidc_auth") {
		t.Errorf("the start reported an allow-listed route as misrouted:\n%s", l)
	}
	office := &http.Client{
		Transport:     &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := office.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, h.idpURL) {
		t.Fatalf("a navigation from the office: %d to %q, want a redirect to the provider", resp.StatusCode, loc)
	}
}

// A handler the walk cannot find in the server's routes (reached through a named route's
// invoke, or a plugin's own routes) cannot be judged: its sign-ins are not refused.
func TestAHandlerOutsideTheWalkedRoutesIsNotRefused(t *testing.T) {
	t.Parallel()
	h := hotPathHandler(t)
	h.callbackPath = "/oauth2/callback"
	srv := &caddyhttp.Server{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}}}}}
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/page", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
	if !h.callbackRouted(r) {
		t.Error("a handler the walk cannot find was judged misrouted")
	}
	// Found, and not reached: refused.
	srv.Routes = caddyhttp.RouteList{
		{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}}},
		{Handlers: []caddyhttp.MiddlewareHandler{h}},
	}
	if h.callbackRouted(r) {
		t.Error("a callback answered by the route before the handler was judged routed")
	}
}
