package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("oidc_auth", parseGlobalOption)
}

// App holds the providers a site's oidc_auth handlers name, so that a provider — issuer,
// client, secrets, scopes, cookie, sessions, impersonation, headers — is written once and
// every route's oidc_auth adds only its own allow rules (and may narrow its headers).
type App struct {
	// The providers, by name: each the configuration of an oidc_auth handler without allow
	// rules and without a provider name of its own.
	Providers map[string]*Handler `json:"providers,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oidc_auth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the providers' shape; each is provisioned by the handlers that name it.
func (a *App) Provision(caddy.Context) error {
	for name, p := range a.Providers {
		switch {
		case p == nil:
			return fmt.Errorf("oidc_auth provider %q: empty", name)
		case name == "" || name != strings.Map(cookieNameRune, name):
			return fmt.Errorf("oidc_auth provider %q: use letters, digits, '_' and '-' only", name)
		case len(p.Providers) > 0:
			return fmt.Errorf("oidc_auth provider %q: a provider does not name another", name)
		case p.Allow != nil:
			return fmt.Errorf("oidc_auth provider %q: allow belongs in each route's oidc_auth", name)
		}
	}
	return nil
}

// Start and Stop: the app holds configuration only.
func (a *App) Start() error { return nil }
func (a *App) Stop() error  { return nil }

// takeProvider makes h the provider called name, keeping its own allow rules and, when it
// sets them, its own headers. A provider's cookie and callback default to names of its own
// (_oidc_auth_NAME, /oauth2/NAME/callback), so that several providers can serve one site.
func (h *Handler) takeProvider(ctx caddy.Context, name string) error {
	own := *h
	own.Allow, own.Headers, own.Assertion, own.Providers = nil, nil, nil, nil
	if b, err := json.Marshal(own); err != nil || string(b) != "{}" {
		return fmt.Errorf("oidc_auth provider %q: the provider sets everything but allow, headers and assertion; remove the rest from this block", name)
	}
	v, err := ctx.AppIfConfigured("oidc_auth")
	if err != nil {
		return fmt.Errorf("oidc_auth provider %q: no oidc_auth global option defines providers", name)
	}
	app, ok := v.(*App)
	if !ok {
		return errors.New("oidc_auth: the oidc_auth app is not this module's")
	}
	tpl, ok := app.Providers[name]
	if !ok {
		return fmt.Errorf("oidc_auth provider %q: not defined in the oidc_auth global option", name)
	}
	// A copy through JSON: provisioning fills defaults into what it is given, and every route
	// naming the provider must start from the same configuration.
	raw, err := json.Marshal(tpl)
	if err != nil {
		return fmt.Errorf("oidc_auth provider %q: %w", name, err)
	}
	allow, headers, asrt, names := h.Allow, h.Headers, h.Assertion, h.Providers
	*h = Handler{}
	if err := json.Unmarshal(raw, h); err != nil {
		return fmt.Errorf("oidc_auth provider %q: %w", name, err)
	}
	h.Allow, h.Providers, h.providerName = allow, names, name
	if asrt != nil {
		// Each route's copy: provisioning fills in its defaults.
		c := *asrt
		h.Assertion = &c
	}
	if headers != nil {
		h.Headers = headers
	}
	if h.Cookie == nil {
		h.Cookie = new(CookieConfig)
	}
	if h.Cookie.Name == "" {
		h.Cookie.Name = "_oidc_auth_" + name
	}
	if h.RedirectURI == "" {
		h.RedirectURI = "/oauth2/" + name + "/callback"
	}
	return nil
}

// parseGlobalOption reads the oidc_auth global option:
//
//	oidc_auth {
//		provider NAME {
//			<every oidc_auth option but allow and provider>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	d.Next() // the option's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	app := &App{Providers: map[string]*Handler{}}
	for d.NextBlock(0) {
		if d.Val() != "provider" {
			return nil, d.Errf("unrecognized oidc_auth global option %q", d.Val())
		}
		if !d.NextArg() {
			return nil, d.Err("provider takes a name and a block")
		}
		name := d.Val()
		if _, dup := app.Providers[name]; dup {
			return nil, d.Errf("provider %q defined twice", name)
		}
		p := new(Handler)
		if err := p.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
			return nil, err
		}
		app.Providers[name] = p
	}
	return httpcaddyfile.App{Name: "oidc_auth", Value: caddyconfig.JSON(app, nil)}, nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
