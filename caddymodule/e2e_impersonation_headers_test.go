package caddymodule

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The impersonation headers the upstream sees come from the session only, never from the request.

// impSpoofing sends a request carrying forged impersonation headers in several spellings.
func (h *harness) impSpoofing(accept string) result {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.siteURL+"/app", nil)
	req.Header.Set("Accept", accept)
	for name, v := range map[string]string{
		"X-Forwarded-Impersonator":       "spoofed-1",
		"X_Forwarded_Impersonator":       "spoofed-2",
		"x-forwarded-impersonator":       "spoofed-3",
		"x_forwarded_impersonator_email": "spoofed-4",
		"X-FORWARDED-IMPERSONATOR-EMAIL": "spoofed-5",
		"x-forwarded-impersonated":       "spoofed-6",
		"X_FORWARDED_IMPERSONATED":       "spoofed-7",
		"x_forwarded_user":               "spoofed-8",
	} {
		req.Header[name] = []string{v} // as written, not canonicalized
	}
	resp, err := h.noRedirects().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
}

// impNoSpoofUpstream checks that nothing forged reached the upstream.
func impNoSpoofUpstream(t *testing.T, e echoed) {
	t.Helper()
	for name, vals := range e.Headers {
		for _, v := range vals {
			if strings.Contains(v, "spoofed") {
				t.Errorf("a forged %s reached the upstream: %q", name, v)
			}
		}
	}
}

func TestImpersonationHeadersReachTheUpstreamAndForgedOnesNever(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)

	t.Run("unauthenticated requests with forged headers never reach the upstream", func(t *testing.T) {
		if res := h.impSpoofing("application/json"); res.status != http.StatusUnauthorized || strings.Contains(res.body, "spoofed") {
			t.Errorf("API call: %d %s", res.status, res.body)
		}
		if res := h.impSpoofing("text/html"); res.status != http.StatusFound ||
			!strings.HasPrefix(res.header.Get("Location"), h.idpURL+"authorize?") {
			t.Errorf("navigation: %d to %q", res.status, res.header.Get("Location"))
		}
		if h.upstream.count() != 0 {
			t.Error("the upstream was reached")
		}
	})

	t.Run("a user's own session cannot claim an impersonator", func(t *testing.T) {
		own := h.impOtherBrowser()
		own.login("bob")
		res := own.impSpoofing("text/html")
		e, ok := res.echo()
		if !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impNoSpoofUpstream(t, e)
		impWantHeaders(t, e, map[string]string{"X-Forwarded-User": "auth0|bob", "X-Forwarded-Impersonated": "false",
			"X-Forwarded-Impersonator": "", "X-Forwarded-Impersonator-Email": ""})
	})

	t.Run("an impersonated session shows the impersonator, and forged values cannot change it", func(t *testing.T) {
		e, ok := h.browse(h.impLink("alice", "admin", impParams{})).echo()
		if !ok {
			t.Fatal("the impersonation did not sign in")
		}
		impWantHeaders(t, e, aliceAsAdmin)
		res := h.impSpoofing("text/html")
		if e, ok = res.echo(); !ok {
			t.Fatalf("%d %.200s", res.status, res.body)
		}
		impNoSpoofUpstream(t, e)
		impWantHeaders(t, e, aliceAsAdmin)
		if ui := h.impUserinfo(); ui["impersonated"] != true {
			t.Errorf("userinfo: %v", ui)
		} else if imp, _ := ui["impersonator"].(map[string]any); imp["id"] != "auth0|admin" || imp["email"] != "admin@example.com" {
			t.Errorf("userinfo impersonator: %v", ui["impersonator"])
		}
	})
}
