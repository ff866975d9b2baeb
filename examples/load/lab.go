package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	clientID      = "load"
	clientSecret  = "load-secret"
	sessionSecret = "load-test-secret-load-test-secret-0123"
	cookieSecret  = "0123456789abcdef0123456789abcdef" // oauth2-proxy's: 32 bytes
	moduleCookie  = "_oidc_auth"                       // the module's default cookie name
	o2pCookie     = "_oauth2_proxy"                    // oauth2-proxy's default cookie name
	signInAs      = "alice"                            // a demo user of the provider, group staff
	bearerAud     = "api"
	// answer is what the upstream says to every request.
	answer = "ok\n"
)

var errNothingToMeasure = errors.New("nothing left to measure")

// system is one thing measured: where wrk sends its requests, with which headers.
type system struct {
	name, desc string
	url        string   // what wrk loads
	headers    []string // "Name: value", on every request
	proc       *proc    // the process serving url: its Caddy, or oauth2-proxy for (d)
	port       int
	adminPort  int    // with -profile: its Caddy's admin endpoint, for /debug/pprof
	module     bool   // an oidc_auth Caddy, signed in through
	cookie     string // its own session cookie(s), for an oidc_auth Caddy
}

// cookieHeader is the system's Cookie header value.
func (s *system) cookieHeader() string {
	for _, h := range s.headers {
		if v, ok := strings.CutPrefix(h, "Cookie: "); ok {
			return v
		}
	}
	return ""
}

// lab is everything set up for a run.
type lab struct {
	systems  []*system
	byName   map[string]*system
	issuer   string
	redisURL string
	procs    *processes
	o2p      *proc
	extra    []*proc // processes whose memory is shown besides the systems' (oauth2-proxy)
}

var descriptions = map[string]string{
	"a":        "(a) Caddy reverse_proxy",
	"b":        "(b) Caddy oidc_auth",
	"c":        "(c) Caddy forward_auth+oauth2-proxy",
	"d":        "(d) oauth2-proxy alone",
	"b-groups": "(b) + allow groups (cached)",
	"b-expr":   "(b) + allow expression (request.path)",
	"b-redis":  "(b) + Redis, server-side sessions",
	"b-assert": "(b) + signed assertion",
	"b-bearer": "(b) + bearer token (cached)",
}

// setUp starts everything the chosen systems need, signs in, and checks each system answers.
func setUp(o options, procs *processes) (*lab, error) {
	want := slices.Clone(o.systems)
	caddyBin, devidpBin, err := buildBinaries(procs.dir)
	if err != nil {
		return nil, err
	}
	o2pBin := o.o2pBin
	if slices.Contains(want, "c") || slices.Contains(want, "d") {
		if o2pBin == "" {
			fmt.Printf("installing oauth2-proxy (go install %s) ...\n", oauth2ProxyModule)
			o2pBin, err = installOAuth2Proxy(procs.dir)
		}
		if err != nil {
			fmt.Printf("skipping (c) and (d): oauth2-proxy could not be installed: %v\n", err)
			want = slices.DeleteFunc(want, func(s string) bool { return s == "c" || s == "d" })
		}
	}
	if slices.Contains(want, "b-redis") {
		if _, err := exec.LookPath("redis-server"); err != nil {
			fmt.Println("skipping b-redis: redis-server not found (apt-get install redis-server)")
			want = slices.DeleteFunc(want, func(s string) bool { return s == "b-redis" })
		}
	}
	if len(want) == 0 {
		return nil, errNothingToMeasure
	}
	l := &lab{byName: map[string]*system{}, procs: procs}

	upPort := freePort()
	up := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", upPort), ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, answer)
		})}
	ln, err := net.Listen("tcp", up.Addr)
	if err != nil {
		return nil, err
	}
	go func() { _ = up.Serve(ln) }()
	upstream := up.Addr

	for _, name := range want {
		s := &system{name: name, desc: descriptions[name], port: freePort()}
		if o.profile != "" && name != "d" {
			s.adminPort = freePort()
		}
		s.url = fmt.Sprintf("http://127.0.0.1:%d/", s.port)
		s.module = strings.HasPrefix(name, "b")
		l.systems = append(l.systems, s)
		l.byName[name] = s
	}
	o2pPort := 0
	if l.byName["c"] != nil || l.byName["d"] != nil {
		o2pPort = freePort()
		if d := l.byName["d"]; d != nil {
			d.port, d.url = o2pPort, fmt.Sprintf("http://127.0.0.1:%d/", o2pPort)
		}
	}

	if l.byName["b-redis"] != nil {
		port := freePort()
		p, err := procs.start("redis", "redis-server", nil, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", procs.dir)
		if err != nil {
			return nil, err
		}
		if err := waitTCP(p, port); err != nil {
			return nil, err
		}
		l.redisURL = fmt.Sprintf("redis://127.0.0.1:%d", port)
	}

	// The provider, with every callback registered.
	idpPort := freePort()
	l.issuer = fmt.Sprintf("http://127.0.0.1:%d/", idpPort)
	args := []string{"-addr", fmt.Sprintf("127.0.0.1:%d", idpPort), "-issuer", l.issuer,
		"-client-id", clientID, "-client-secret", clientSecret}
	for _, s := range l.systems {
		if s.module {
			args = append(args, "-redirect-uri", s.url+"oauth2/callback")
		}
	}
	if o2pPort != 0 {
		args = append(args, "-redirect-uri", fmt.Sprintf("http://127.0.0.1:%d/oauth2/callback", o2pPort))
	}
	idp, err := procs.start("devidp", devidpBin, nil, args...)
	if err != nil {
		return nil, err
	}
	if err := idp.waitHTTP(l.issuer + ".well-known/openid-configuration"); err != nil {
		return nil, err
	}

	if o2pPort != 0 {
		o2p := fmt.Sprintf("http://127.0.0.1:%d", o2pPort)
		p, err := procs.start("oauth2-proxy", o2pBin, nil,
			"--http-address", fmt.Sprintf("127.0.0.1:%d", o2pPort),
			"--provider", "oidc", "--oidc-issuer-url", l.issuer,
			"--client-id", clientID, "--client-secret", clientSecret,
			"--redirect-url", o2p+"/oauth2/callback",
			"--cookie-secret", cookieSecret, "--cookie-secure=false",
			"--email-domain", "*", "--upstream", "http://"+upstream+"/",
			"--skip-provider-button", "--set-xauthrequest",
			"--request-logging=false", "--auth-logging=false")
		if err != nil {
			return nil, err
		}
		if err := p.waitHTTP(o2p + "/ping"); err != nil {
			return nil, err
		}
		l.o2p = p
		l.extra = append(l.extra, p)
		if d := l.byName["d"]; d != nil {
			d.proc = p
		}
	}

	for _, s := range l.systems {
		if s.name == "d" {
			continue
		}
		conf := caddyfile(l, s, upstream, o2pPort, filepath.Join(procs.dir, "storage-"+s.name))
		path := filepath.Join(procs.dir, "Caddyfile."+s.name)
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		env := []string{"XDG_DATA_HOME=" + filepath.Join(procs.dir, "xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(procs.dir, "xdg-config")}
		p, err := procs.start("caddy-"+s.name, caddyBin, env, "run", "--config", path, "--adapter", "caddyfile")
		if err != nil {
			return nil, err
		}
		s.proc = p
	}
	for _, s := range l.systems {
		if err := s.proc.waitHTTP(s.url + "__ready"); err != nil {
			return nil, err
		}
	}

	if err := l.signIn(o2pPort); err != nil {
		return nil, err
	}
	for _, s := range l.systems {
		if err := check(s); err != nil {
			return nil, fmt.Errorf("%s does not serve a signed-in request: %w", s.desc, err)
		}
	}
	return l, nil
}

// signIn signs in for real through every oidc_auth Caddy and oauth2-proxy, gets a bearer
// token if one is needed, and sets every system's headers.
func (l *lab) signIn(o2pPort int) error {
	var shared string // the module's cookie every non-module system is sent: (b)'s, else the first one's
	for _, s := range l.systems {
		if !s.module || s.name == "b-bearer" && l.byName["b"] != nil {
			continue
		}
		c, err := moduleLogin(s.url)
		if err != nil {
			return fmt.Errorf("signing in through %s: %w", s.desc, err)
		}
		s.cookie = c
		if shared == "" || s.name == "b" {
			shared = c
		}
	}
	if b := l.byName["b-bearer"]; b != nil && b.cookie == "" {
		b.cookie = shared
	}
	var o2p string
	if o2pPort != 0 {
		var err error
		if o2p, err = oauth2ProxyLogin(fmt.Sprintf("http://127.0.0.1:%d", o2pPort)); err != nil {
			return fmt.Errorf("signing in through oauth2-proxy: %w", err)
		}
	}
	join := func(parts ...string) string {
		return strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), "; ")
	}
	for _, s := range l.systems {
		own := shared
		if s.cookie != "" {
			own = s.cookie
		}
		if c := join(own, o2p); c != "" {
			s.headers = []string{"Cookie: " + c}
		}
	}
	if b := l.byName["b-bearer"]; b != nil {
		tok, err := clientCredentials(l.issuer)
		if err != nil {
			return fmt.Errorf("getting a bearer token: %w", err)
		}
		b.headers = append(b.headers, "Authorization: Bearer "+tok)
	}
	return nil
}

// caddyfile is the configuration of one system's Caddy.
func caddyfile(l *lab, s *system, upstream string, o2pPort int, storage string) string {
	var site string
	switch s.name {
	case "a":
		site = "reverse_proxy " + upstream
	case "c":
		site = fmt.Sprintf(`forward_auth 127.0.0.1:%d {
		uri /oauth2/auth
		copy_headers X-Auth-Request-User X-Auth-Request-Email
	}
	reverse_proxy %s`, o2pPort, upstream)
	default:
		extra := map[string]string{
			"b-groups": "allow {\n\t\t\tgroups staff\n\t\t}",
			"b-expr":   "allow {\n\t\t\texpression \"request.path.startsWith('/') && claims.email.endsWith('@example.com')\"\n\t\t}",
			"b-redis":  "store redis " + l.redisURL + "\n\t\tserver_side_sessions on",
			"b-assert": fmt.Sprintf("assertion {\n\t\t\taudience x\n\t\t\tissuer http://127.0.0.1:%d\n\t\t}", s.port),
			"b-bearer": "bearer {\n\t\t\taudience " + bearerAud + "\n\t\t}",
		}[s.name]
		site = fmt.Sprintf(`oidc_auth {
		issuer %s
		client_id %s
		client_secret %s
		session_secret %s
		cookie {
			insecure
		}
		%s
	}
	reverse_proxy %s`, l.issuer, clientID, clientSecret, sessionSecret, extra, upstream)
	}
	admin := "off"
	if s.adminPort != 0 {
		admin = fmt.Sprintf("127.0.0.1:%d", s.adminPort)
	}
	return fmt.Sprintf(`{
	admin %s
	auto_https off
	persist_config off
	storage file_system %s
	log {
		level ERROR
	}
}

http://:%d {
	bind 127.0.0.1
	%s
}
`, admin, storage, s.port, site)
}

// check sends one request as wrk will and wants the upstream's answer.
func check(s *system) error {
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	for _, h := range s.headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK || string(body) != answer {
		return fmt.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, answer)
	}
	return nil
}

// waitTCP waits until something listens on the loopback port, or the process ends.
func waitTCP(p *proc, port int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail())
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %d within 30s", p.name, port)
}
