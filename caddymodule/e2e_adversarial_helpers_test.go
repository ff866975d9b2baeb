package caddymodule

import (
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

// The adversarial suite (e2e_adversarial_*_test.go, run with -run Adversarial): attacks on the
// module through real Caddy, table-driven. Every case states the exact status the attack must
// get, whether the application may see the request (and then that it saw no forged value),
// and the audit events the attack must leave, or none. This file holds what the cases share.

// advKey signs for every provider of the suite: a fresh 2048-bit key per harness would cost
// more than the rest of a case.
var advKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// advHarness is newHarness with the suite's signing key.
func advHarness(t *testing.T, cfg func(*Handler), idpCfg func(*devidp.Config)) *harness {
	t.Helper()
	return newHarness(t, cfg, func(c *devidp.Config) {
		c.Key = advKey()
		if idpCfg != nil {
			idpCfg(c)
		}
	})
}

// advSite is a site the cases of a table share: the handler's and the provider's
// configuration (nil: the harness's defaults), named.
type advSite struct {
	name string
	cfg  func(*Handler)
	idp  func(*devidp.Config)
}

// advEach runs cases grouped by site, in the order their sites first appear: one harness per
// site (Caddy runs one configuration at a time, and every harness costs ports, which other
// test processes may be taking), each case a subtest in a new browser on it. key gives a
// case's site and name.
func advEach[C any](t *testing.T, cases []C, key func(C) (advSite, string), run func(t *testing.T, h *harness, c C)) {
	t.Helper()
	var order []advSite
	groups := map[string][]C{}
	for _, c := range cases {
		site, _ := key(c)
		if _, seen := groups[site.name]; !seen {
			order = append(order, site)
		}
		groups[site.name] = append(groups[site.name], c)
	}
	for _, site := range order {
		t.Run(site.name, func(t *testing.T) {
			h := advHarness(t, site.cfg, site.idp)
			for _, c := range groups[site.name] {
				_, name := key(c)
				t.Run(name, func(t *testing.T) { run(t, h.advBrowser(t), c) })
			}
		})
	}
}

// advBrowser is a new browser (a cookie jar of its own) on h's site for the subtest t, with the
// provider back to signing alice in and behaving, and the clock moved on enough for the
// per-client budgets of callbacks to be full again.
func (h *harness) advBrowser(t *testing.T) *harness {
	b := h.impOtherBrowser()
	b.t = t
	b.idp.SetAutoLogin("alice", "")
	if err := b.idp.SetMisbehaviour(); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(callbackBurst * callbackRefill)
	return b
}

// advImp is a handler configuration with this impersonation block.
func advImp(imp ImpersonationConfig) func(*Handler) {
	return func(c *Handler) { c.Impersonation = &imp }
}

// advMark is what the site had seen before an attack: its audit events and the requests the
// application received.
type advMark struct{ events, upstream int }

func (h *harness) advMark() advMark {
	return advMark{events: h.audit.Len(), upstream: h.upstream.count()}
}

// advWant is how an attack must end.
type advWant struct {
	status int
	// events are the audit events the attack logs, in order, comma-separated; "" wants none.
	events string
	// reason is a substring of the last event's reason; "" checks none.
	reason string
	// reaches: the application receives the request (a pass-through), and then must see no
	// forged value. Otherwise it must receive nothing.
	reaches bool
}

// advForged marks every value an attacker supplies, so that one search finds any that got
// through (to the application, or reflected in a page).
const advForged = "forged"

// advCheck checks the answer to an attack against want, since mark.
func (h *harness) advCheck(m advMark, res result, want advWant) {
	h.t.Helper()
	if res.status != want.status {
		h.t.Errorf("status %d, want %d; body %.300s", res.status, want.status, res.body)
	}
	all := h.audit.All()[m.events:]
	var names []string
	for _, e := range all {
		names = append(names, e.Message)
	}
	if got := strings.Join(names, ","); got != want.events {
		h.t.Errorf("audit events %q, want %q", got, want.events)
	} else if want.reason != "" {
		if reason, _ := all[len(all)-1].ContextMap()["reason"].(string); !strings.Contains(reason, want.reason) {
			h.t.Errorf("%s reason %q, want it to contain %q", want.events, reason, want.reason)
		}
	}
	switch n := h.upstream.count() - m.upstream; {
	case want.reaches && n != 1:
		h.t.Errorf("the application received %d requests, want 1", n)
	case want.reaches:
		for name, vals := range h.upstreamHeaders() {
			for _, v := range vals {
				if strings.Contains(v, advForged) {
					h.t.Errorf("the application saw a forged %s: %q", name, v)
				}
			}
		}
	case n != 0:
		h.t.Errorf("the application received %d requests, want none", n)
	}
	if !want.reaches && strings.Contains(res.body, advForged) {
		h.t.Errorf("the answer reflects a forged value: %.400s", res.body)
	}
}

// upstreamHeaders are the headers of the last request the application received.
func (h *harness) upstreamHeaders() http.Header {
	h.upstream.mu.Lock()
	defer h.upstream.mu.Unlock()
	if h.upstream.last == nil {
		return nil
	}
	return h.upstream.last.Header.Clone()
}

// advReq is one crafted request to the site. Header names are sent as written, never
// canonicalized, and repeated names are sent repeated.
type advReq struct {
	method string // default GET
	path   string // a path on the site
	header [][2]string
	body   string // with contentType, default urlencoded, when not empty
	ctype  string
	// origin is the Origin header; "self" stands for the site's own.
	origin string
	// bare sends it without the browser's cookie jar (the Cookie header is the case's own).
	bare bool
	// follow follows redirects, sending the same headers again each time, as the client does.
	follow bool
}

// advSend sends r and stops at the first response.
func (h *harness) advSend(r advReq) result {
	h.t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(method, h.siteURL+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if r.body != "" {
		ct := r.ctype
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
	}
	for _, kv := range r.header {
		req.Header[kv[0]] = append(req.Header[kv[0]], kv[1])
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/html")
	}
	switch r.origin {
	case "":
	case "self":
		req.Header.Set("Origin", h.siteURL)
	default:
		req.Header.Set("Origin", r.origin)
	}
	c := h.noRedirects()
	if r.follow {
		c.CheckRedirect = nil
	}
	if r.bare {
		c.Jar = nil
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
}

// advDefaultHeaders are the managed headers' default names.
var advDefaultHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Forwarded-Impersonated", "X-Forwarded-Impersonator", "X-Forwarded-Impersonator-Email",
}

// advSpoof forges each header of names in every spelling an application may read as it: as
// written and twice (duplicated), in lower case, in upper case with '_' for '-', and mixed.
func advSpoof(names ...string) [][2]string {
	var hs [][2]string
	for i, n := range names {
		v := advForged + "-" + strconv.Itoa(i)
		lower := strings.ToLower(n)
		hs = append(hs,
			[2]string{n, v + "a"}, [2]string{n, v + "b"},
			[2]string{lower, v + "c"},
			[2]string{strings.ToUpper(strings.ReplaceAll(n, "-", "_")), v + "d"},
			[2]string{strings.Replace(lower, "-", "_", 1), v + "e"},
		)
	}
	return hs
}

// advFollow is a navigation to an absolute URL (the provider's, or a Location) that stops
// at the first response.
func (h *harness) advFollow(t *testing.T, res result, want int) result {
	t.Helper()
	loc := res.header.Get("Location")
	if res.status != want || loc == "" {
		t.Fatalf("status %d to %q, want %d with a Location; body %.300s", res.status, loc, want, res.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if !u.IsAbs() {
		loc = h.siteURL + loc
	}
	return h.impNavigate(loc)
}

// advImpersonate signs the browser in as alice, impersonated by admin, through the
// confirmation page when the configuration has one.
func (h *harness) advImpersonate() {
	h.t.Helper()
	page := h.browse(h.impLink("alice", "admin", impParams{Scope: "openid profile email"}))
	if _, ok := page.echo(); ok {
		return
	}
	h.impConfirm(page)
}
