// Command demo runs, on this machine only, the three parts of a protected site: the
// development identity provider (Auth0-like, with "Sign in as User"), a small legacy app that
// shows the headers it receives, and Caddy with oidc_auth in front of the app.
//
//	go run ./examples/demo
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/relyingparty/caddy-oidc-auth/caddymodule"
	"github.com/relyingparty/caddy-oidc-auth/examples/demo/legacyapp"
	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func main() {
	sitePort := flag.Int("site-port", 8080, "port of the protected site (http://localhost:PORT)")
	idpPort := flag.Int("idp-port", 9000, "port of the identity provider (http://127.0.0.1:PORT)")
	appPort := flag.Int("app-port", 9001, "port of the legacy app (127.0.0.1 only, behind Caddy)")
	flag.Parse()
	if err := run(*sitePort, *idpPort, *appPort); err != nil {
		log.Fatal(err)
	}
}

func run(sitePort, idpPort, appPort int) error {
	site := fmt.Sprintf("http://localhost:%d", sitePort)
	issuer := fmt.Sprintf("http://127.0.0.1:%d/", idpPort)

	// The provider and the site are on different hosts (127.0.0.1 and localhost), so the
	// browser treats them as different sites, as in production.
	idp, err := devidp.New(devidp.Config{
		Issuer:     issuer,
		AdminToken: randomHex(16),
		Clients: []devidp.Client{{
			ID:                     "demo-app",
			Secret:                 "demo-app-secret",
			RedirectURIs:           []string{site + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{site + "/"},
		}},
	})
	if err != nil {
		return err
	}
	if err := serve(fmt.Sprintf("127.0.0.1:%d", idpPort), idp); err != nil {
		return fmt.Errorf("identity provider: %w", err)
	}
	if err := serve(fmt.Sprintf("127.0.0.1:%d", appPort), legacyapp.Handler()); err != nil {
		return fmt.Errorf("legacy app: %w", err)
	}

	siteConfig := string(caddyfile.Format([]byte(Caddyfile(sitePort, issuer, appPort, randomHex(32)))))
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(siteConfig), nil)
	if err != nil {
		return fmt.Errorf("adapting the demo Caddyfile: %w", err)
	}
	for _, w := range warnings {
		log.Printf("caddyfile: %s", w.Message)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}

	fmt.Printf(`
caddy-oidc-auth demo is running.

  Protected site:     %[1]s
  Identity provider:  %[2]s   (admin page: %[2]sadmin)

Try it:
  1. Open %[1]s and sign in as any demo user: the app shows the headers Caddy sent it.
  2. Sign out, sign in as "Ada Admin" (admin@example.com), then open %[2]sadmin,
     pick a user and press "Sign in as User", then open the link it shows.
     The site asks you to confirm, then the app shows the impersonation headers.
     "End impersonation" gives you back your own session.
  3. Call the app's API as a machine client, with an access token from the provider:
       TOKEN=$(curl -s %[2]soauth/token -d grant_type=client_credentials \
         -d client_id=demo-app -d client_secret=demo-app-secret -d audience=demo-api \
         | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
       curl -H "Authorization: Bearer $TOKEN" %[1]s/api/whoami
     A bad token gets 401 with WWW-Authenticate: Bearer error="invalid_token".

Audit events are printed below. Press Ctrl+C to stop.

The Caddyfile in use:
%[3]s
`, site, issuer, indent(siteConfig))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return caddy.Stop()
}

// Caddyfile is the demo site's configuration.
func Caddyfile(sitePort int, issuer string, appPort int, secret string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	log audit {
		output stdout
		format console
		include http.handlers.oidc_auth.audit
	}
	log default {
		exclude http.handlers.oidc_auth.audit
		level WARN
	}
}

http://localhost:%d {
	bind 127.0.0.1
	oidc_auth {
		issuer        %s
		client_id     demo-app
		client_secret demo-app-secret
		session_secret %s
		cookie {
			insecure
		}
		bearer {
			audience demo-api
		}
		impersonation {
			impersonators auth0|admin
			protect       ceo@example.com
		}
	}
	reverse_proxy 127.0.0.1:%d
}
`, sitePort, issuer, secret, appPort)
}

// serve listens on addr and serves h in the background.
func serve(addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("%s: %v", addr, err)
		}
	}()
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}
