package caddymodule

import (
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// HeadersConfig names the headers the upstream receives. Each field takes a header name, or
// "off" to send none.
type HeadersConfig struct {
	// The subject (sub). Default: X-Forwarded-User.
	User string `json:"user,omitempty"`
	// The email. Default: X-Forwarded-Email.
	Email string `json:"email,omitempty"`
	// The preferred_username claim. Default: X-Forwarded-Preferred-Username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// The groups, joined with ",". Default: X-Forwarded-Groups.
	Groups string `json:"groups,omitempty"`
	// "true" or "false". Default: X-Forwarded-Impersonated.
	Impersonated string `json:"impersonated,omitempty"`
	// The impersonator's ID, on impersonated sessions. Default: X-Forwarded-Impersonator.
	Impersonator string `json:"impersonator,omitempty"`
	// The impersonator's email, on impersonated sessions, only when the provider (or
	// trust_impersonator_email) vouches for it. Default: X-Forwarded-Impersonator-Email.
	ImpersonatorEmail string `json:"impersonator_email,omitempty"`
	// The impersonator's email when nothing vouches for it (Auth0's impersonator object
	// carries no verification): shown for what it is, never as identity.
	// Default: X-Forwarded-Impersonator-Email-Unverified.
	ImpersonatorEmailUnverified string `json:"impersonator_email_unverified,omitempty"`
	// The access token, only when it verified for the configured audience (never a
	// userinfo-only token); "Bearer " is prefixed when the header is Authorization.
	// Default: off.
	AccessToken string `json:"access_token,omitempty"`
	// The raw ID token. Default: off.
	IDToken string `json:"id_token,omitempty"`
	// The granted OAuth scopes, space-separated. Default: off (a client's X-Forwarded-Scopes
	// is removed all the same).
	Scopes string `json:"scopes,omitempty"`
	// Further claims, by name or dotted path, each to its own header. Default: none.
	Claims []HeaderClaim `json:"claims,omitempty"`
}

// HeaderClaim sends one claim upstream in a header.
type HeaderClaim struct {
	// The claim's name or dotted path.
	Claim string `json:"claim"`
	// The header's name.
	Header string `json:"header"`
}

// Header names used when the configuration names none.
var defaultHeaders = HeadersConfig{
	User:                        "X-Forwarded-User",
	Email:                       "X-Forwarded-Email",
	PreferredUsername:           "X-Forwarded-Preferred-Username",
	Groups:                      "X-Forwarded-Groups",
	Impersonated:                "X-Forwarded-Impersonated",
	Impersonator:                "X-Forwarded-Impersonator",
	ImpersonatorEmail:           "X-Forwarded-Impersonator-Email",
	ImpersonatorEmailUnverified: "X-Forwarded-Impersonator-Email-Unverified",
	Scopes:                      "X-Forwarded-Scopes",
}

// headerPlan is HeadersConfig resolved once at provision: canonical names, "" for off, and
// every name the module manages (stripped from every incoming request).
type headerPlan struct {
	user, email, username, groups, impersonated, impersonator, impersonatorEmail string
	impersonatorEmailUnverified                                                  string
	accessToken, idToken, scopes                                                 string
	bearer                                                                       bool
	claims                                                                       []HeaderClaim
	managed                                                                      []string
	lengths                                                                      [64]bool // the lengths of the managed names
}

func newHeaderPlan(c *HeadersConfig) headerPlan {
	p := headerPlan{
		user:                        pick(c.User, defaultHeaders.User),
		email:                       pick(c.Email, defaultHeaders.Email),
		username:                    pick(c.PreferredUsername, defaultHeaders.PreferredUsername),
		groups:                      pick(c.Groups, defaultHeaders.Groups),
		impersonated:                pick(c.Impersonated, defaultHeaders.Impersonated),
		impersonator:                pick(c.Impersonator, defaultHeaders.Impersonator),
		impersonatorEmail:           pick(c.ImpersonatorEmail, defaultHeaders.ImpersonatorEmail),
		impersonatorEmailUnverified: pick(c.ImpersonatorEmailUnverified, defaultHeaders.ImpersonatorEmailUnverified),
		accessToken:                 pick(c.AccessToken, ""),
		idToken:                     pick(c.IDToken, ""),
		scopes:                      pick(c.Scopes, ""),
	}
	p.bearer = strings.EqualFold(p.accessToken, "Authorization")
	for _, hc := range c.Claims {
		p.claims = append(p.claims, HeaderClaim{Claim: hc.Claim, Header: http.CanonicalHeaderKey(hc.Header)})
	}
	// The default names are stripped even when renamed or off: an application may still trust them.
	names := []string{p.user, p.email, p.username, p.groups, p.impersonated, p.impersonator,
		p.impersonatorEmail, p.accessToken, p.idToken,
		defaultHeaders.User, defaultHeaders.Email, defaultHeaders.PreferredUsername, defaultHeaders.Groups,
		defaultHeaders.Impersonated, defaultHeaders.Impersonator, defaultHeaders.ImpersonatorEmail,
		p.impersonatorEmailUnverified, defaultHeaders.ImpersonatorEmailUnverified, p.scopes, defaultHeaders.Scopes,
		defaultAssertionHeader} // stripped even where no assertion is configured
	for _, hc := range p.claims {
		names = append(names, hc.Header)
	}
	for _, n := range names {
		if n != "" {
			p.manage(n)
		}
	}
	return p
}

// manage adds a header name to those stripped from every incoming request.
func (p *headerPlan) manage(name string) {
	if !containsHeaderName(p.managed, name) {
		p.managed = append(p.managed, name)
		if len(name) < len(p.lengths) {
			p.lengths[len(name)] = true
		}
	}
}

func pick(configured, def string) string {
	switch configured {
	case "":
		return http.CanonicalHeaderKey(def)
	case "off":
		return ""
	}
	return http.CanonicalHeaderKey(configured)
}

// sameHeaderName compares header names as the upstream may: case-insensitively, with '_' and
// '.' equal to '-' (CGI, PHP and many frameworks turn all three into the same variable).
func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' || x == '.' {
			x = '-'
		}
		if y == '_' || y == '.' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func containsHeaderName(names []string, n string) bool {
	for _, m := range names {
		if sameHeaderName(m, n) {
			return true
		}
	}
	return false
}

// strip removes every managed header, in any spelling, from an incoming request, and every
// token of Connection that names one: a proxy after this module (reverse_proxy, php_fastcgi)
// removes the headers Connection names, and would remove them after this module set them.
func (p *headerPlan) strip(h http.Header) {
	for k := range h {
		if len(k) < len(p.lengths) && !p.lengths[len(k)] {
			continue // no managed name is that long: most of a request's headers
		}
		if containsHeaderName(p.managed, k) {
			delete(h, k)
		}
	}
	if conn, ok := h["Connection"]; ok {
		p.stripConnection(h, conn)
	}
}

// stripConnection rewrites Connection without the tokens that name a managed header.
func (p *headerPlan) stripConnection(h http.Header, values []string) {
	kept := make([]string, 0, 2)
	changed := false
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			t := strings.TrimSpace(tok)
			if containsHeaderName(p.managed, t) {
				changed = true
				continue
			}
			if t != "" {
				kept = append(kept, t)
			}
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(h, "Connection")
	default:
		h["Connection"] = []string{strings.Join(kept, ", ")}
	}
}

// declaresManagedTrailer reports whether a request announces a trailer field that names a
// managed header: a proxy after this module would deliver it to the application after the body.
func (p *headerPlan) declaresManagedTrailer(trailer http.Header) bool {
	for k := range trailer {
		if containsHeaderName(p.managed, k) {
			return true
		}
	}
	return false
}

// trailerGuard removes managed fields from a request's trailers when its body ends, before a
// proxy after this module copies them: a client may send trailer fields it did not announce.
type trailerGuard struct {
	io.ReadCloser
	trailer http.Header
	plan    *headerPlan
}

func (g *trailerGuard) Read(b []byte) (int, error) {
	n, err := g.ReadCloser.Read(b)
	if err == io.EOF {
		g.plan.strip(g.trailer)
	}
	return n, err
}

// set writes the session's identity into the request headers. The values share one backing
// array, so the headers cost one allocation, not one each.
func (p *headerPlan) set(h http.Header, s *session.Session) {
	vals := make([]string, 0, 10+len(p.claims))
	put := func(name, v string) {
		if name == "" || v == "" {
			return
		}
		vals = append(vals, v)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	put(p.user, claims.HeaderSafe(s.Subject))
	put(p.email, claims.HeaderSafe(s.Email))
	put(p.username, claims.HeaderSafe(s.PreferredUsername))
	if p.groups != "" && len(s.Groups) > 0 {
		put(p.groups, joinGroups(s.Groups))
	}
	if s.Impersonated {
		put(p.impersonated, "true")
		put(p.impersonator, claims.HeaderSafe(s.ImpersonatorID))
		if s.ImpersonatorEmailVerified {
			put(p.impersonatorEmail, claims.HeaderSafe(s.ImpersonatorEmail))
		} else {
			put(p.impersonatorEmailUnverified, claims.HeaderSafe(s.ImpersonatorEmail))
		}
	} else {
		put(p.impersonated, "false")
	}
	if p.accessToken != "" && s.TokenAudience != "" && !s.Impersonated && s.AccessToken != "" {
		if p.bearer {
			put(p.accessToken, "Bearer "+s.AccessToken)
		} else {
			put(p.accessToken, s.AccessToken)
		}
	}
	if !s.Impersonated {
		// Auth0's impersonated ID tokens say nothing of the impersonation: an upstream trusting
		// one would take it for the user's own.
		put(p.idToken, s.IDToken)
	}
	put(p.scopes, claims.HeaderSafe(s.Scopes))
	for _, hc := range p.claims {
		if v, ok := s.ClaimValue(hc.Claim); ok {
			put(hc.Header, v)
		}
	}
}

// joinGroups joins groups with ",", leaving out any group whose name holds a comma: a group
// called "x,admins" must not read as membership of "admins".
func joinGroups(groups []string) string {
	for _, g := range groups {
		if strings.IndexByte(g, ',') >= 0 {
			kept := make([]string, 0, len(groups))
			for _, g := range groups {
				if strings.IndexByte(g, ',') < 0 {
					kept = append(kept, g)
				}
			}
			return claims.HeaderSafe(strings.Join(kept, ","))
		}
	}
	return claims.HeaderSafe(strings.Join(groups, ","))
}

// keptClaims lists the claims a session keeps: those the headers name and those asked for.
func keptClaims(p headerPlan, extra []string) []string {
	var keep []string
	for _, hc := range p.claims {
		keep = append(keep, hc.Claim)
	}
	for _, c := range extra {
		if !slices.Contains(keep, c) {
			keep = append(keep, c)
		}
	}
	return keep
}
