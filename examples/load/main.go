// Command load measures the authenticated-request path under load: real Caddy in-process,
// the development provider and a trivial upstream, all on loopback. It signs in once, then
// drives two routes of the same Caddy for the same duration — one through oidc_auth with the
// session cookie, one straight to the upstream — and reports throughput and latency of each,
// so the module's share can be read off.
//
//	go run ./examples/load -c 32 -d 10s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/relyingparty/caddy-oidc-auth/caddymodule"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func main() {
	conc := flag.Int("c", 32, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "duration of each run")
	flag.Parse()
	if err := run(*conc, *dur); err != nil {
		log.Fatal(err)
	}
}

func run(conc int, dur time.Duration) error {
	idpAddr, sitePort, plainPort := listenAddr(), port(), port()
	issuer := "http://" + idpAddr + "/"
	site := "http://127.0.0.1:" + sitePort
	idp, err := devidp.New(devidp.Config{Issuer: issuer, Clients: []devidp.Client{{
		ID: "load", Secret: "load-secret", RedirectURIs: []string{site + "/oauth2/callback"}}}})
	if err != nil {
		return err
	}
	idp.SetAutoLogin("alice", "")
	go serve(idpAddr, idp)
	upAddr := listenAddr()
	go serve(upAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-User"))
	}))

	proxy := map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": upAddr}}}
	server := func(p string, handlers ...any) map[string]any {
		return map[string]any{"listen": []string{"127.0.0.1:" + p}, "automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": handlers}}}
	}
	cfg, _ := json.Marshal(map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{
			"oidc": server(sitePort, map[string]any{
				"handler": "oidc_auth", "issuer": issuer, "client_id": "load", "client_secret": "load-secret",
				"session_secrets": []string{"load-test-secret-load-test-secret-0123"}, "cookie": map[string]any{"insecure": true},
			}, proxy),
			"plain": server(plainPort, proxy),
		}}},
	})
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	defer caddy.Stop() //nolint:errcheck

	jar, _ := cookiejar.New(nil)
	login := &http.Client{Jar: jar}
	req, _ := http.NewRequest(http.MethodGet, site+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := login.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "auth0|alice" {
		return fmt.Errorf("login failed: %d %q", resp.StatusCode, body)
	}
	u, _ := url.Parse(site)
	var cookie string
	for _, c := range jar.Cookies(u) {
		cookie += c.Name + "=" + c.Value + "; "
	}

	fmt.Printf("%d clients, %s each, on %s\n\n", conc, dur, "loopback")
	fmt.Printf("%-28s %10s %10s %10s %10s\n", "route", "req/s", "p50", "p99", "errors")
	for _, r := range []struct{ name, url, cookie, want string }{
		{"reverse_proxy only", "http://127.0.0.1:" + plainPort + "/", "", ""},
		{"oidc_auth + reverse_proxy", site + "/", cookie, "auth0|alice"},
	} {
		s := load(r.url, r.cookie, r.want, conc, dur)
		fmt.Printf("%-28s %10.0f %10s %10s %10d\n", r.name, s.rps, s.p50, s.p99, s.errors)
	}
	return nil
}

type stats struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
}

func load(target, cookie, want string, conc int, dur time.Duration) stats {
	tr := &http.Transport{MaxIdleConnsPerHost: conc}
	client := &http.Client{Transport: tr}
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	end := time.Now().Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				req, _ := http.NewRequest(http.MethodGet, target, nil)
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				if resp.StatusCode != 200 || string(b) != want {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		return stats{errors: errs}
	}
	return stats{
		rps:    float64(len(lat)) / dur.Seconds(),
		p50:    lat[len(lat)/2].Round(time.Microsecond),
		p99:    lat[len(lat)*99/100].Round(time.Microsecond),
		errors: errs,
	}
}

func serve(addr string, h http.Handler) {
	if err := http.ListenAndServe(addr, h); err != nil {
		log.Fatal(err)
	}
}

func listenAddr() string { return "127.0.0.1:" + port() }

func port() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
