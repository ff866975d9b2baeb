// Command devidp runs the development identity provider on its own, for trying the module
// (or any OpenID Connect client) against it:
//
//	go run ./cmd/devidp -redirect-uri http://localhost:8080/oauth2/callback -user dora@example.org:ops
//
// It prints the issuer, the client and the users, then serves until interrupted.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // the usage was printed
		}
		log.Fatal(err)
	}
}

// run builds the provider from args, describes it on out and serves until SIGINT or SIGTERM.
func run(args []string, out io.Writer) error {
	cfg, addr, err := configFromFlags(args)
	if err != nil {
		return err
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		return err
	}
	describe(out, addr, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: idp, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// configFromFlags parses args into the provider's configuration and the address to listen on.
func configFromFlags(args []string) (devidp.Config, string, error) {
	fs := flag.NewFlagSet("devidp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "address to listen on")
	issuer := fs.String("issuer", "", "issuer URL, with a trailing slash (default http://ADDR/)")
	clientID := fs.String("client-id", "demo-app", "the registered client's id")
	secret := fs.String("client-secret", "demo-app-secret", "the client's secret; empty makes a public client")
	var redirects, postLogout listFlag
	fs.Var(&redirects, "redirect-uri", "an allowed callback URL of the client, repeatable (default http://localhost:8080/oauth2/callback)")
	fs.Var(&postLogout, "post-logout-uri", "an allowed post-logout URL of the client, repeatable (default http://localhost:8080/)")
	backchannel := fs.String("backchannel-logout-uri", "", "the client's back-channel logout URL (default none)")
	usersFile := fs.String("users", "", "JSON file: a list of users {key, id, email, email_verified, name, nickname, groups, roles, admin} (default the demo users)")
	var extra listFlag
	fs.Var(&extra, "user", "one more user, EMAIL or EMAIL:GROUP,GROUP (verified email; key and name from its local part, id auth0|KEY), repeatable")
	mode := fs.String("mode", "auth0", "how impersonation shows: auth0, keycloak or act")
	namespace := fs.String("namespace", "", `namespace of impersonation claims in Auth0-mode ID tokens, e.g. "https://example.com/" (default none)`)
	adminToken := fs.String("admin-token", "", "Bearer token of the impersonation API (default a random one, printed)")
	misbehave := fs.String("misbehave", "", "comma-separated misbehaviour switches, e.g. id-token-invalid-iss,jwks-500 (default none)")
	if err := fs.Parse(args); err != nil {
		return devidp.Config{}, "", err
	}
	if fs.NArg() > 0 {
		return devidp.Config{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := devidp.Config{Issuer: *issuer, Mode: devidp.Mode(*mode), Namespace: *namespace, AdminToken: *adminToken}
	if cfg.Issuer == "" {
		host, port, err := net.SplitHostPort(*addr)
		if err != nil {
			return devidp.Config{}, "", fmt.Errorf("-addr %q: %w", *addr, err)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1" // listening everywhere: name the loopback address
		}
		cfg.Issuer = "http://" + net.JoinHostPort(host, port) + "/"
	}
	if len(redirects) == 0 {
		redirects = listFlag{"http://localhost:8080/oauth2/callback"}
	}
	if len(postLogout) == 0 {
		postLogout = listFlag{"http://localhost:8080/"}
	}
	cfg.Clients = []devidp.Client{{ID: *clientID, Secret: *secret, RedirectURIs: redirects,
		PostLogoutRedirectURIs: postLogout, BackchannelLogoutURI: *backchannel}}
	if *usersFile != "" {
		raw, err := os.ReadFile(*usersFile)
		if err != nil {
			return devidp.Config{}, "", fmt.Errorf("reading -users: %w", err)
		}
		if err := json.Unmarshal(raw, &cfg.Users); err != nil {
			return devidp.Config{}, "", fmt.Errorf("-users %s is not a JSON list of users: %w", *usersFile, err)
		}
		if len(cfg.Users) == 0 {
			return devidp.Config{}, "", fmt.Errorf("-users %s lists no users", *usersFile)
		}
	}
	if len(extra) > 0 && cfg.Users == nil {
		cfg.Users = devidp.DemoUsers()
	}
	for _, v := range extra {
		u, err := userFromFlag(v)
		if err != nil {
			return devidp.Config{}, "", err
		}
		cfg.Users = append(cfg.Users, u)
	}
	if cfg.AdminToken == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.AdminToken = hex.EncodeToString(b)
	}
	for _, m := range strings.Split(*misbehave, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !slices.Contains(devidp.Misbehaviours(), devidp.Misbehaviour(m)) {
			return devidp.Config{}, "", fmt.Errorf("-misbehave: unknown switch %q (known: %s)", m, joinSwitches())
		}
		cfg.Misbehave = append(cfg.Misbehave, devidp.Misbehaviour(m))
	}
	return cfg, *addr, nil
}

// userFromFlag makes the user of a -user value, EMAIL or EMAIL:GROUP,GROUP.
func userFromFlag(v string) (devidp.User, error) {
	email, groups, _ := strings.Cut(v, ":")
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" {
		return devidp.User{}, fmt.Errorf("-user %q: want EMAIL or EMAIL:GROUP,GROUP", v)
	}
	key := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, local)
	u := devidp.User{Key: key, ID: "auth0|" + key, Email: email, EmailVerified: true, Name: local, Nickname: key}
	for _, g := range strings.Split(groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			u.Groups = append(u.Groups, g)
		}
	}
	return u, nil
}

func joinSwitches() string {
	var names []string
	for _, m := range devidp.Misbehaviours() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}

// describe prints what a developer needs to point a client at the provider.
func describe(out io.Writer, addr string, cfg devidp.Config) {
	users := cfg.Users
	if users == nil {
		users = devidp.DemoUsers()
	}
	fmt.Fprintf(out, "Development identity provider listening on %s\n", addr)
	fmt.Fprintf(out, "  issuer      %s\n", cfg.Issuer)
	fmt.Fprintf(out, "  discovery   %s.well-known/openid-configuration\n", cfg.Issuer)
	fmt.Fprintf(out, "  admin page  %sadmin\n", cfg.Issuer)
	fmt.Fprintf(out, "  mode        %s\n", cfg.Mode)
	if cfg.Namespace != "" {
		fmt.Fprintf(out, "  namespace   %s\n", cfg.Namespace)
	}
	fmt.Fprintf(out, "  admin token %s (POST %susers/{id}/impersonate)\n", cfg.AdminToken, cfg.Issuer)
	for _, c := range cfg.Clients {
		fmt.Fprintf(out, "Client\n  client_id     %s\n  client_secret %s\n", c.ID, c.Secret)
		for _, u := range c.RedirectURIs {
			fmt.Fprintf(out, "  redirect_uri  %s\n", u)
		}
		for _, u := range c.PostLogoutRedirectURIs {
			fmt.Fprintf(out, "  post-logout   %s\n", u)
		}
		if c.BackchannelLogoutURI != "" {
			fmt.Fprintf(out, "  back-channel  %s\n", c.BackchannelLogoutURI)
		}
	}
	fmt.Fprintln(out, "Users")
	for _, u := range users {
		admin := ""
		if u.Admin {
			admin = " (administrator)"
		}
		fmt.Fprintf(out, "  %-10s %-16s %s%s\n", u.Key, u.ID, u.Email, admin)
	}
	for _, m := range cfg.Misbehave {
		fmt.Fprintf(out, "Misbehaving: %s\n", m)
	}
}
