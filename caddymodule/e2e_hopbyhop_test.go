package caddymodule

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// What a client can do with HTTP/1's hop-by-hop machinery to keep the identity headers from
// the application: name them in Connection (a proxy removes what Connection names, after this
// module set them) or send them as request trailers (a proxy delivers those after the body).
// Each case runs through real Caddy with reverse_proxy or php_fastcgi in front of an
// application that reports what it received.

// seen is what the application reports: its headers and, after reading the body, its trailers.
type seen struct {
	Header  http.Header `json:"header"`
	Trailer http.Header `json:"trailer"`
}

func reportingApp(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(seen{Header: r.Header, Trailer: r.Trailer})
}

// hopSite runs Caddy with oidc_auth (impersonation on) in front of proxy, a Caddyfile line
// with $APP standing for the application's address (php_fastcgi for a FastCGI one), and returns
// the site's address and a cookie header of an impersonated session: alice, impersonated by the
// admin.
func hopSite(t *testing.T, proxy string) (addr, cookie string) {
	t.Helper()
	addr, cookie, _, _ = advAliasSite(t, "", proxy)
	return addr, cookie
}

// rawExchange writes a request as bytes and reads the response.
func rawExchange(t *testing.T, addr, request string) (int, seen) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	var got seen
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatalf("decoding what the application saw: %v", err)
		}
	}
	return resp.StatusCode, got
}

// identityHeaders are the headers the application must receive for the impersonated session.
var identityHeaders = map[string]string{
	"X-Forwarded-User": "auth0|alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "staff",
	"X-Forwarded-Impersonated": "true", "X-Forwarded-Impersonator": "auth0|admin",
}

func TestConnectionCannotHideTheIdentityHeaders(t *testing.T) {
	for _, tc := range []struct{ name, proxy string }{
		{"reverse_proxy", "reverse_proxy $APP"},
		{"php_fastcgi", "php_fastcgi $APP"},
	} {
		for _, conn := range []struct{ name, lines, proto string }{
			{"the identity headers named in Connection", "Connection: X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups\r\n", "HTTP/1.1"},
			{"the impersonation headers named in Connection", "Connection: X-Forwarded-Impersonated, X-Forwarded-Impersonator, X-Forwarded-Impersonator-Email\r\n", "HTTP/1.1"},
			{"any case, with keep-alive", "Connection: keep-alive, x-forwarded-impersonated, X-FORWARDED-USER\r\n", "HTTP/1.1"},
			{"over two Connection lines", "Connection: keep-alive\r\nConnection: X-Forwarded-User,X-Forwarded-Impersonated\r\n", "HTTP/1.1"},
			{"HTTP/1.0 with keep-alive", "Connection: keep-alive, X-Forwarded-Impersonated, X-Forwarded-User\r\n", "HTTP/1.0"},
		} {
			t.Run(tc.name+": "+conn.name, func(t *testing.T) {
				addr, cookie := hopSite(t, tc.proxy)
				status, got := rawExchange(t, addr, "GET /index.php "+conn.proto+"\r\nHost: "+addr+"\r\nAccept: application/json\r\n"+
					"Cookie: "+cookie+"\r\n"+conn.lines+"\r\n")
				if status != http.StatusOK {
					t.Fatalf("status %d", status)
				}
				for name, want := range identityHeaders {
					if v := got.Header.Get(name); v != want {
						t.Errorf("the application got %s %q, want %q", name, v, want)
					}
				}
			})
		}
	}
	t.Run("other Connection tokens keep their meaning", func(t *testing.T) {
		addr, cookie := hopSite(t, "reverse_proxy $APP")
		_, got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: "+addr+"\r\nAccept: application/json\r\nCookie: "+cookie+
			"\r\nConnection: X-Private-Hop, X-Forwarded-User\r\nX-Private-Hop: 1\r\n\r\n")
		if got.Header.Get("X-Private-Hop") != "" || got.Header.Get("X-Forwarded-User") != "auth0|alice" {
			t.Errorf("the application got X-Private-Hop %q (a hop-by-hop header the client named) and X-Forwarded-User %q",
				got.Header.Get("X-Private-Hop"), got.Header.Get("X-Forwarded-User"))
		}
	})
}

func TestRequestTrailersCannotCarryIdentityHeaders(t *testing.T) {
	chunked := func(addr, cookie, declared, trailers string) string {
		return "POST / HTTP/1.1\r\nHost: " + addr + "\r\nAccept: application/json\r\nCookie: " + cookie +
			"\r\nTransfer-Encoding: chunked\r\nTrailer: " + declared + "\r\n\r\n5\r\nhello\r\n0\r\n" + trailers + "\r\n"
	}
	for _, declared := range []string{"X-Forwarded-User", "x_forwarded_impersonated", "X-Checksum, X-Forwarded-Impersonator"} {
		t.Run("a request announcing "+declared+" as a trailer is refused", func(t *testing.T) {
			addr, cookie := hopSite(t, "reverse_proxy $APP")
			status, _ := rawExchange(t, addr, chunked(addr, cookie, declared, "X-Forwarded-User: mallory\r\n"))
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", status)
			}
		})
	}
	t.Run("identity fields sent as trailers without announcing them never arrive", func(t *testing.T) {
		addr, cookie := hopSite(t, "reverse_proxy $APP")
		status, got := rawExchange(t, addr, chunked(addr, cookie, "X-Checksum",
			"X-Checksum: abc\r\nX-Forwarded-User: mallory\r\nX_Forwarded_Impersonated: false\r\n"))
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		if got.Trailer.Get("X-Checksum") != "abc" {
			t.Errorf("the announced trailer did not arrive: %v", got.Trailer)
		}
		for name := range got.Trailer {
			if containsHeaderName([]string{"X-Forwarded-User", "X-Forwarded-Impersonated"}, name) {
				t.Errorf("the application got the trailer %s: %v", name, got.Trailer)
			}
		}
		if got.Header.Get("X-Forwarded-User") != "auth0|alice" {
			t.Errorf("X-Forwarded-User %q", got.Header.Get("X-Forwarded-User"))
		}
	})
}
