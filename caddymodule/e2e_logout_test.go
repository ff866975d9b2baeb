package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// Logout by cross-site GET: a link or an image on any page must not sign a user out here and
// at the provider. A request from elsewhere gets a page whose Sign out is a same-origin POST.

func TestLogoutFromAnotherSiteAsksFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"Sec-Fetch-Site cross-site (a link or an image elsewhere)", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site same-site (a sibling subdomain)", []string{"Sec-Fetch-Site", "same-site"}},
		{"an Origin of another site", []string{"Origin", "https://evil.example"}},
		{"a Referer of another site", []string{"Referer", "https://evil.example/page"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, nil)
			h.login("alice")
			before := len(h.audit.FilterMessage(evLogout).All())
			req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/oauth2/logout?rd=/bye", nil)
			req.Header.Set("Accept", "text/html")
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			resp, err := h.noRedirects().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<form method="post" action="/oauth2/logout?rd=%2Fbye">`) ||
				!strings.Contains(body, `id="signout"`) || len(resp.Header.Values("Set-Cookie")) != 0 {
				t.Fatalf("got %d, cookies %v, body %.400s", resp.StatusCode, resp.Header.Values("Set-Cookie"), body)
			}
			if resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("the question can be framed")
			}
			if len(h.audit.FilterMessage(evLogout).All()) != before {
				t.Errorf("a logout was audited")
			}
			if res := h.api(http.MethodGet, "/oauth2/userinfo"); res.status != http.StatusOK {
				t.Errorf("the session ended: userinfo %d", res.status)
			}
			// The page's answer: a same-origin POST (Origin null, as its no-referrer policy makes it).
			post, _ := http.NewRequest(http.MethodPost, h.siteURL+"/oauth2/logout?rd=/bye", nil)
			post.Header.Set("Sec-Fetch-Site", "same-origin")
			post.Header.Set("Origin", "null")
			resp, err = h.noRedirects().Do(post)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), h.idpURL) {
				t.Errorf("signing out from the page: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if res := h.api(http.MethodGet, "/oauth2/userinfo"); res.status != http.StatusUnauthorized {
				t.Errorf("still signed in after the page's Sign out: %d", res.status)
			}
		})
	}
	t.Run("a same-origin navigation or a typed address signs out at once", func(t *testing.T) {
		h := newHarness(t, nil, nil)
		for _, site := range []string{"same-origin", "none", ""} {
			h.login("alice")
			var hd []string
			if site != "" {
				hd = []string{"Sec-Fetch-Site", site}
			}
			req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/oauth2/logout", nil)
			for i := 0; i+1 < len(hd); i += 2 {
				req.Header.Set(hd[i], hd[i+1])
			}
			resp, err := h.noRedirects().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), h.idpURL) {
				t.Errorf("Sec-Fetch-Site %q: %d to %q", site, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	})
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
