package caddymodule

import (
	"net"
	"net/http"
	"net/http/fcgi"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Caddy drops every request header whose name holds '_' or '.' before any handler runs, unless
// the server's expected_underscore_headers / expected_dot_headers let them in. An operator whose
// application needs such headers lets them in, and then only this module stands between a
// client's X_Forwarded_User and the application (which may read it as X-Forwarded-User: CGI,
// FastCGI and PHP fold '-' and '_' onto one variable, PHP '.' too).

// advAliasSite runs Caddy from a Caddyfile whose server lets in the header names serverOpts
// says, with oidc_auth (impersonation on) in front of proxy, a Caddyfile line where $APP stands
// for an application that reports what it received. It returns the site's address and the
// cookie header of alice's session, impersonated by admin, the audit log and the number of
// requests the application received.
func advAliasSite(t *testing.T, serverOpts, proxy string) (addr, cookie string, audit *observer.ObservedLogs, hits *atomic.Int32) {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = new(atomic.Int32)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); reportingApp(w, r) })
	if strings.HasPrefix(proxy, "php_fastcgi") {
		go func() { _ = fcgi.Serve(ln, app) }()
		t.Cleanup(func() { ln.Close() })
	} else {
		srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: app}}
		srv.Start()
		t.Cleanup(srv.Close)
	}
	addr = "127.0.0.1:" + freePort(t)
	loadCaddyfile(t, `{
	admin off
	auto_https off
	servers {
		`+serverOpts+`
	}
	log {
		level ERROR
	}
}
http://`+addr+` {
	oidc_auth {
		issuer http://127.0.0.1:1/
		client_id `+testClientID+`
		session_secret `+testSecret+`
		cookie {
			insecure
		}
		impersonation {
		}
	}
	`+strings.ReplaceAll(proxy, "$APP", ln.Addr().String())+`
}
`)
	h := provisionedHandlers(t)[0]
	core, audit := observer.New(zapcore.InfoLevel)
	h.audit = zap.New(core)
	now := time.Now()
	s := &session.Session{ID: "sess-alias", Subject: "auth0|alice", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"staff"}, Impersonated: true, ImpersonatorID: "auth0|admin",
		Created: now, LastSeen: now, Expires: now.Add(time.Hour)}
	return addr, sealedSessionCookie(h, s), audit, hits
}

// advAliases forges the identity headers under names with sep in place of '-', each once (Caddy
// drops a let-in name that comes with several values), in upper and lower case.
func advAliases(sep string) string {
	var b strings.Builder
	for i, n := range []string{"X-Forwarded-User", "X-Forwarded-Impersonated", "x-forwarded-impersonator", "x-forwarded-groups"} {
		b.WriteString(strings.ReplaceAll(n, "-", sep) + ": " + advForged + "-" + strconv.Itoa(i) + "\r\n")
	}
	return b.String()
}

func TestAdversarialHeaderAliasesLetInByTheServer(t *testing.T) {
	underscores := "expected_underscore_headers X_Forwarded_User X_Forwarded_Impersonated X_Forwarded_Impersonator X_Forwarded_Groups x_*"
	for _, tc := range []struct {
		name, serverOpts, proxy, sep string
		session                      bool
		status                       int
	}{
		{"underscore names let in by name, reverse_proxy, with a session", underscores, "reverse_proxy $APP", "_", true, http.StatusOK},
		{"underscore names let in by name, php_fastcgi, with a session", underscores, "php_fastcgi $APP", "_", true, http.StatusOK},
		{"underscore names let in by a prefix, reverse_proxy, with a session", "expected_underscore_headers X_* x_*", "reverse_proxy $APP", "_", true, http.StatusOK},
		{"underscore names let in by a prefix, php_fastcgi, with a session", "expected_underscore_headers X_* x_*", "php_fastcgi $APP", "_", true, http.StatusOK},
		{"underscore names let in, without a session", underscores, "reverse_proxy $APP", "_", false, http.StatusUnauthorized},
		// php_fastcgi passes X.Forwarded.User as HTTP_X.FORWARDED.USER, which PHP registers in
		// $_SERVER as HTTP_X_FORWARDED_USER (GHSA-49wc-4hcv-v58q).
		{"dotted names let in by a prefix, php_fastcgi, with a session", "expected_dot_headers X.* x.*", "php_fastcgi $APP", ".", true, http.StatusOK},
		{"dotted names let in by a prefix, reverse_proxy, with a session", "expected_dot_headers X.* x.*", "reverse_proxy $APP", ".", true, http.StatusOK},
		{"dotted names let in by name, php_fastcgi, with a session",
			"expected_dot_headers X.Forwarded.User X.Forwarded.Impersonated x.forwarded.impersonator x.forwarded.groups",
			"php_fastcgi $APP", ".", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, cookie, audit, hits := advAliasSite(t, tc.serverOpts, tc.proxy)
			lines := "GET /index.php HTTP/1.1\r\nHost: " + addr + "\r\nAccept: application/json\r\n" + advAliases(tc.sep)
			if tc.session {
				lines += "Cookie: " + cookie + "\r\n"
			}
			status, got := rawExchange(t, addr, lines+"\r\n")
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if n := audit.Len(); n != 0 {
				t.Errorf("%d audit events, want none", n)
			}
			reached := int32(0)
			if tc.session {
				reached = 1
			}
			if n := hits.Load(); n != reached {
				t.Errorf("the application received %d requests, want %d", n, reached)
			}
			if !tc.session {
				return
			}
			for name, vals := range got.Header {
				for _, v := range vals {
					if strings.Contains(v, advForged) {
						t.Errorf("the application got a forged %s: %q", name, v)
					}
				}
			}
			for name, want := range map[string]string{"X-Forwarded-User": "auth0|alice", "X-Forwarded-Impersonated": "true",
				"X-Forwarded-Impersonator": "auth0|admin", "X-Forwarded-Groups": "staff"} {
				if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
					t.Errorf("the application got %s %q, want %q", name, v, want)
				}
			}
		})
	}
}
