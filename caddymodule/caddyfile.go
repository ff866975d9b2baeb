package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oidc_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("oidc_auth", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. See the README for the syntax.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch opt := d.Val(); opt {
		case "issuer":
			err = oneArg(d, &h.Issuer)
		case "client_id":
			err = oneArg(d, &h.ClientID)
		case "client_secret":
			err = oneArg(d, &h.ClientSecret)
		case "client_key":
			err = oneArg(d, &h.ClientKeyFile)
		case "client_auth_method":
			err = oneArg(d, &h.ClientAuthMethod)
		case "redirect_uri":
			err = oneArg(d, &h.RedirectURI)
		case "audience":
			err = oneArg(d, &h.Audience)
		case "scopes":
			err = someArgs(d, &h.Scopes)
		case "session_secret":
			err = someArgs(d, &h.SessionSecrets)
		case "session_claims":
			err = someArgs(d, &h.SessionClaims)
		case "session_lifetime":
			err = durationArg(d, &h.SessionLifetime)
		case "session_idle":
			err = durationArg(d, &h.SessionIdle)
		case "refresh":
			err = onOff(d, &h.Refresh)
		case "server_side_sessions":
			err = onOff(d, &h.ServerSideSessions)
		case "unauthenticated":
			err = oneArg(d, &h.Unauthenticated)
		case "cookie":
			h.Cookie = new(CookieConfig)
			err = h.Cookie.unmarshal(d)
		case "allow":
			h.Allow = new(AllowConfig)
			err = h.Allow.unmarshal(d)
		case "impersonation":
			h.Impersonation = new(ImpersonationConfig)
			err = h.Impersonation.unmarshal(d)
		case "bearer":
			h.Bearer = new(BearerConfig)
			err = h.Bearer.unmarshal(d)
		case "headers":
			h.Headers = new(HeadersConfig)
			err = h.Headers.unmarshal(d)
		case "assertion":
			h.Assertion = new(AssertionConfig)
			err = h.Assertion.unmarshal(d)
		case "store":
			err = h.unmarshalStore(d)
		case "provider":
			err = someArgs(d, &h.Providers)
		default:
			return d.Errf("unrecognized oidc_auth option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalStore reads `store BACKEND [{ options }]`: the backend's module parses the rest.
func (h *Handler) unmarshalStore(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("store takes a backend name, e.g. memory")
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, "http.handlers.oidc_auth.stores."+name)
	if err != nil {
		return err
	}
	h.StoreRaw = caddyconfig.JSONModuleObject(mod, "backend", name, nil)
	return nil
}

func (c *AssertionConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "header":
			err = oneArg(d, &c.Header)
		case "audience":
			err = oneArg(d, &c.Audience)
		case "issuer":
			err = oneArg(d, &c.Issuer)
		case "lifetime":
			err = durationArg(d, &c.Lifetime)
		case "key_rotation":
			err = durationArg(d, &c.KeyRotation)
		default:
			return d.Errf("unrecognized oidc_auth assertion option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *CookieConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "name":
			err = oneArg(d, &c.Name)
		case "domain":
			err = oneArg(d, &c.Domain)
		case "same_site":
			err = oneArg(d, &c.SameSite)
		case "insecure":
			c.Insecure = true
			if d.NextArg() {
				err = d.ArgErr()
			}
		default:
			return d.Errf("unrecognized oidc_auth cookie option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *AllowConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "emails":
			err = appendArgs(d, &a.Emails)
		case "domains":
			err = appendArgs(d, &a.Domains)
		case "groups":
			err = appendArgs(d, &a.Groups)
		case "groups_claim":
			err = oneArg(d, &a.GroupsClaim)
		case "scopes":
			err = appendArgs(d, &a.Scopes)
		case "claim":
			var args []string
			if err = someArgs(d, &args); err == nil && len(args) < 2 {
				err = d.Err("claim needs a claim name and at least one value")
			}
			if err == nil {
				a.Claims = append(a.Claims, ClaimRule{Claim: args[0], Values: args[1:]})
			}
		case "expression":
			err = oneArg(d, &a.Expression)
		default:
			return d.Errf("unrecognized oidc_auth allow option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshal reads `bearer [only] [{ audience A; clock_skew D; only }]`.
func (c *BearerConfig) unmarshal(d *caddyfile.Dispenser) error {
	for d.NextArg() {
		if d.Val() != "only" {
			return d.Errf("bearer takes only the argument only, not %q", d.Val())
		}
		c.Only = true
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "audience":
			err = oneArg(d, &c.Audience)
		case "clock_skew":
			err = durationArg(d, &c.ClockSkew)
		case "only":
			c.Only = true
			if d.NextArg() {
				err = d.ArgErr()
			}
		default:
			return d.Errf("unrecognized oidc_auth bearer option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *ImpersonationConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "claims":
			err = oneArg(d, &c.Claims)
		case "namespace":
			err = oneArg(d, &c.Namespace)
		case "impersonated_claim":
			err = oneArg(d, &c.ImpersonatedClaim)
		case "impersonator_id_claim":
			err = oneArg(d, &c.ImpersonatorIDClaim)
		case "impersonator_email_claim":
			err = oneArg(d, &c.ImpersonatorEmailClaim)
		case "impersonators":
			err = appendArgs(d, &c.Impersonators)
		case "trust_impersonator_email":
			err = onOff(d, &c.TrustImpersonatorEmail)
		case "protect":
			err = appendArgs(d, &c.Protect)
		case "expression":
			err = oneArg(d, &c.Expression)
		case "state":
			args := d.RemainingArgs()
			switch {
			case len(args) == 2 && args[0] == "fixed":
				c.State, c.StateValue = args[0], args[1]
			case len(args) == 1 && args[0] != "fixed":
				c.State = args[0]
			default:
				err = d.Err("state takes any, signed, or fixed VALUE")
			}
		case "confirm":
			var on bool
			if err = onOff(d, &on); err == nil {
				c.Confirm = &on
			}
		case "max_age":
			err = durationArg(d, &c.MaxAge)
		case "lifetime":
			err = durationArg(d, &c.Lifetime)
		case "landing":
			err = oneArg(d, &c.Landing)
		default:
			return d.Errf("unrecognized oidc_auth impersonation option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *HeadersConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := map[string]*string{
		"user": &c.User, "email": &c.Email, "preferred_username": &c.PreferredUsername,
		"groups": &c.Groups, "impersonated": &c.Impersonated, "impersonator": &c.Impersonator,
		"impersonator_email": &c.ImpersonatorEmail, "access_token": &c.AccessToken, "id_token": &c.IDToken,
		"scopes": &c.Scopes,
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "claim" {
			var name, header string
			if !d.AllArgs(&name, &header) {
				return d.Err("claim takes a claim name and a header name")
			}
			c.Claims = append(c.Claims, HeaderClaim{Claim: name, Header: header})
			continue
		}
		p, ok := fields[opt]
		if !ok {
			return d.Errf("unrecognized oidc_auth headers option %q", opt)
		}
		if err := oneArg(d, p); err != nil {
			return err
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	// The option's name is read first: after a failed AllArgs the cursor may be on a value,
	// which must not be echoed (it may be the client secret).
	opt := d.Val()
	if !d.AllArgs(dst) {
		return d.Errf("%s takes exactly one value", opt)
	}
	return nil
}

func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s needs at least one value", opt)
	}
	*dst = args
	return nil
}

func appendArgs(d *caddyfile.Dispenser, dst *[]string) error {
	var args []string
	if err := someArgs(d, &args); err != nil {
		return err
	}
	*dst = append(*dst, args...)
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.Errf("%s takes one duration", opt)
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 {
		return d.Errf("%s %q: not a duration", opt, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

func onOff(d *caddyfile.Dispenser, dst *bool) error {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.Errf("%s takes on or off", opt)
	}
	switch s {
	case "on":
		*dst = true
	case "off":
		*dst = false
	default:
		return d.Errf("%s %q: want on or off", opt, s)
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
