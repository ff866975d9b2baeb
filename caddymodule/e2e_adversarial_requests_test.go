package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Requests the endpoints do not expect: a wrong method (405), an oversized or malformed
// parameter, form or body (400, or Caddy's own 431 for headers beyond what it reads), never a
// 500 and never a call to the provider.

func TestAdversarialMethodsSizesAndForms(t *testing.T) {
	site := advSite{name: "impersonation on, state signed", cfg: advImp(ImpersonationConfig{State: "signed"})}
	notAllowed := advWant{status: http.StatusMethodNotAllowed}
	malformed := func(reason string) advWant {
		return advWant{status: http.StatusBadRequest, events: evLoginFailed, reason: reason}
	}
	form := func(body string) advReq {
		return advReq{method: http.MethodPost, path: "/oauth2/callback", body: body}
	}
	type requestCase struct {
		name string
		req  advReq
		want advWant
	}
	cases := []requestCase{
		{"callback PUT", advReq{method: http.MethodPut, path: "/oauth2/callback?code=" + advForged}, notAllowed},
		{"callback DELETE", advReq{method: http.MethodDelete, path: "/oauth2/callback"}, notAllowed},
		{"callback PATCH", advReq{method: http.MethodPatch, path: "/oauth2/callback", body: "code=" + advForged}, notAllowed},
		{"callback OPTIONS", advReq{method: http.MethodOptions, path: "/oauth2/callback"}, notAllowed},
		{"callback TRACE", advReq{method: http.MethodTrace, path: "/oauth2/callback"}, notAllowed},
		{"callback HEAD (a prefetch must not spend a code)", advReq{method: http.MethodHead, path: "/oauth2/callback?code=" + advForged}, notAllowed},
		{"start POST", advReq{method: http.MethodPost, path: "/oauth2/start?rd=/app", body: "rd=/app"}, notAllowed},
		{"start PUT", advReq{method: http.MethodPut, path: "/oauth2/start"}, notAllowed},
		{"logout PUT", advReq{method: http.MethodPut, path: "/oauth2/logout"}, notAllowed},
		{"logout HEAD", advReq{method: http.MethodHead, path: "/oauth2/logout"}, notAllowed},
		{"logout DELETE", advReq{method: http.MethodDelete, path: "/oauth2/logout"}, notAllowed},
		{"confirm GET", advReq{path: "/oauth2/confirm?token=" + advForged + "&decision=continue"}, notAllowed},
		{"confirm PUT", advReq{method: http.MethodPut, path: "/oauth2/confirm", origin: "self", body: "decision=continue"}, notAllowed},
		{"confirm OPTIONS", advReq{method: http.MethodOptions, path: "/oauth2/confirm"}, notAllowed},
		{"impersonation/end GET", advReq{path: "/oauth2/impersonation/end"}, notAllowed},
		{"impersonation/end HEAD", advReq{method: http.MethodHead, path: "/oauth2/impersonation/end"}, notAllowed},
		{"impersonation/end PUT", advReq{method: http.MethodPut, path: "/oauth2/impersonation/end", origin: "self"}, notAllowed},
		{"impersonation/state POST", advReq{method: http.MethodPost, path: "/oauth2/impersonation/state"}, notAllowed},
		{"impersonation/state DELETE", advReq{method: http.MethodDelete, path: "/oauth2/impersonation/state"}, notAllowed},
		{"a form post that is not urlencoded (multipart)",
			advReq{method: http.MethodPost, path: "/oauth2/callback", ctype: "multipart/form-data; boundary=x",
				body: "--x\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nforged\r\n--x--\r\n"},
			malformed("not urlencoded")},
		{"a form post of JSON",
			advReq{method: http.MethodPost, path: "/oauth2/callback", ctype: "application/json", body: `{"code":"x"}`},
			malformed("not urlencoded")},
		{"a form post with a malformed Content-Type",
			advReq{method: http.MethodPost, path: "/oauth2/callback", ctype: "application/x-www-form-urlencoded; ;=;", body: "code=x"},
			malformed("not urlencoded")},
		{"a form post that does not parse", form("code=%zz&state=x"), malformed("does not parse")},
		{"a form post over 64 KB", form("code=x&pad=" + strings.Repeat("a", 70<<10)), malformed("does not parse")},
		{"a form post of 20,000 parameters", form(strings.Repeat("a&", 20000)), malformed("does not parse")},
		{"a posted ID token over 16 KB", form("access_token=x&id_token=" + strings.Repeat("e", 17<<10)), malformed("too long")},
		{"a posted error_description over 16 KB", form("error=access_denied&error_description=" + strings.Repeat("d", 17<<10)),
			malformed("too long")},
		{"a query that does not parse", advReq{path: "/oauth2/callback?code=x&state=%zz"}, malformed("does not parse")},
		{"the state twice", advReq{path: "/oauth2/callback?code=x&state=a&state=b"}, malformed(`"state" repeated`)},
		{"the code twice", advReq{path: "/oauth2/callback?code=a&code=b"}, malformed(`"code" repeated`)},
		{"the error twice", advReq{path: "/oauth2/callback?error=access_denied&error=server_error"}, malformed(`"error" repeated`)},
		{"the ID token twice, posted", form("id_token=a.b.c&id_token=d.e.f&access_token=x"), malformed(`"id_token" repeated`)},
		{"a query over what Caddy reads", advReq{path: "/oauth2/callback?code=x&pad=" + strings.Repeat("a", 40<<10)},
			advWant{status: http.StatusRequestHeaderFieldsTooLarge}},
		{"a forged identity header over what Caddy reads",
			advReq{path: "/app", header: [][2]string{{"X-Forwarded-User", strings.Repeat(advForged, 8<<10)}}},
			advWant{status: http.StatusRequestHeaderFieldsTooLarge}},
		{"a code with NUL and invalid UTF-8",
			advReq{path: "/oauth2/callback?code=%00%ff" + advForged + "&state=i.%ff%fe"},
			advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "not a signed impersonation state"}},
		{"an empty code and no state",
			advReq{path: "/oauth2/callback?code="},
			advWant{status: http.StatusForbidden, events: evImpersonationDenied, reason: "not a signed impersonation state"}},
	}
	advEach(t, cases, func(c requestCase) (advSite, string) { return site, c.name }, func(t *testing.T, h *harness, c requestCase) {
		m := h.advMark()
		res := h.advSend(c.req)
		h.advCheck(m, res, c.want)
		if c.want.status == http.StatusMethodNotAllowed && c.req.method != http.MethodHead &&
			!strings.Contains(res.body, "does not accept that kind of request") {
			t.Errorf("not the module's 405 page: %.300s", res.body)
		}
	})
}

// Every endpoint with a session, asked with a method it does not take: the session neither
// ends nor changes, and nothing is signed in or out.
func TestAdversarialWrongMethodsWithASession(t *testing.T) {
	site := advSite{name: "impersonation on, state signed", cfg: advImp(ImpersonationConfig{State: "signed"})}
	type methodCase struct{ method, path string }
	var cases []methodCase
	for _, path := range []string{"/oauth2/callback", "/oauth2/start", "/oauth2/logout", "/oauth2/confirm",
		"/oauth2/impersonation/end", "/oauth2/impersonation/state"} {
		cases = append(cases, methodCase{http.MethodPut, path})
	}
	advEach(t, cases, func(c methodCase) (advSite, string) { return site, c.method + " " + c.path }, func(t *testing.T, h *harness, c methodCase) {
		h.login("admin")
		before := h.impUserinfo()["session_id"]
		m := h.advMark()
		res := h.advSend(advReq{method: c.method, path: c.path, origin: "self", body: url.Values{"token": {"x"}}.Encode()})
		h.advCheck(m, res, advWant{status: http.StatusMethodNotAllowed})
		if len(res.header.Values("Set-Cookie")) != 0 {
			t.Errorf("a 405 sets cookies: %q", res.header.Values("Set-Cookie"))
		}
		if after := h.impUserinfo()["session_id"]; after != before {
			t.Errorf("the session changed: %v to %v", before, after)
		}
	})
}

// Forged callbacks cost the provider calls, so each client has a budget of them; headers that
// name another client address do not give a client a fresh one (no trusted_proxies here).
func TestAdversarialForgedCallbacksAreLimited(t *testing.T) {
	site := advSite{name: "impersonation on", cfg: advImp(ImpersonationConfig{})}
	type limitCase struct {
		name   string
		header func(i int) [2]string
	}
	advEach(t, []limitCase{
		{"from one address (control)", func(int) [2]string { return [2]string{"X-Request-Id", "same"} }},
		{"X-Forwarded-For changed each time", func(i int) [2]string { return [2]string{"X-Forwarded-For", "10.0.0." + strconv.Itoa(i)} }},
		{"X-Real-IP changed each time", func(i int) [2]string { return [2]string{"X-Real-IP", "10.0.1." + strconv.Itoa(i)} }},
		{"Forwarded changed each time", func(i int) [2]string { return [2]string{"Forwarded", "for=10.0.2." + strconv.Itoa(i)} }},
	}, func(c limitCase) (advSite, string) { return site, c.name }, func(t *testing.T, h *harness, c limitCase) {
		forge := func(i int) result {
			return h.advSend(advReq{path: "/oauth2/callback?code=" + advForged + strconv.Itoa(i), header: [][2]string{c.header(i)}})
		}
		for i := range callbackBurst {
			if res := forge(i); res.status != http.StatusForbidden {
				t.Fatalf("forged callback %d: %d", i+1, res.status)
			}
		}
		m := h.advMark()
		res := forge(callbackBurst)
		h.advCheck(m, res, advWant{status: http.StatusTooManyRequests, events: evLoginFailed, reason: "too many unsolicited callbacks"})
	})
}
