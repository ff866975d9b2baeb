// Package policy decides who may in: the allow rules and the impersonation policy, with CEL
// expressions. Pure functions of an identity and the request's facts: no HTTP, no logging.
package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// AllowRules are the allow rules as configured. Every category present must admit the user,
// and the expression must be true.
type AllowRules struct {
	Emails, Domains, Groups []string
	// GroupsClaim names the claim that lists the user's groups, for saying that it is absent.
	// Default: groups.
	GroupsClaim string
	// Scopes must all have been granted with the token.
	Scopes     []string
	Claims     []ClaimRule
	Expression string // CEL over claims and request
}

// ClaimRule admits users whose claim (a name or dotted path) has one of the values.
type ClaimRule struct {
	Claim  string
	Values []string
}

// Allow is AllowRules compiled. A nil *Allow admits everyone.
type Allow struct {
	emails, domains, groups map[string]bool
	groupsClaim             string
	scopes                  []string
	claims                  []ClaimRule
	expr                    cel.Program
	needs                   Needs
}

// NewAllow compiles the rules.
func NewAllow(r AllowRules) (*Allow, error) {
	if err := asciiOnly("emails", r.Emails); err != nil {
		return nil, err
	}
	if err := asciiOnly("domains", r.Domains); err != nil {
		return nil, err
	}
	p := &Allow{
		emails:      foldedSet(r.Emails),
		domains:     foldedSet(r.Domains),
		groups:      set(r.Groups),
		groupsClaim: r.GroupsClaim,
		scopes:      r.Scopes,
		claims:      r.Claims,
	}
	if p.groupsClaim == "" {
		p.groupsClaim = "groups"
	}
	for _, sc := range r.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\"\\") {
			return nil, fmt.Errorf("scope %q: a scope is one token without spaces, quotes or backslashes", sc)
		}
	}
	for _, c := range r.Claims {
		if c.Claim == "" || len(c.Values) == 0 {
			return nil, errors.New("claim needs a name and at least one value")
		}
		p.needs.add(Needs{Claims: claimNames(c.Claim)})
	}
	if r.Expression != "" {
		prg, ast, err := compileCEL(r.Expression, "claims", "request")
		if err != nil {
			return nil, err
		}
		p.expr = prg
		p.needs.add(exprNeeds(ast, "claims"))
	}
	return p, nil
}

// Needs is what the rules read beyond the standard identity; a nil policy reads nothing.
func (p *Allow) Needs() Needs {
	if p == nil {
		return Needs{}
	}
	return p.needs
}

// Admit reports whether the identity may in, and if not, why (for the audit log). req is what
// expressions see of the request (host, method, path, remote_ip).
func (p *Allow) Admit(ctx context.Context, id *claims.Identity, req map[string]any) (bool, string) {
	if p == nil {
		return true, ""
	}
	if missing := p.MissingScopes(id.Scopes); missing != nil {
		return false, "missing scope " + strings.Join(missing, " ")
	}
	if len(p.emails)+len(p.domains) > 0 {
		email := foldASCII(id.Email)
		if !id.EmailVerified || email == "" || !(p.emails[email] || p.domains[emailDomain(email)]) {
			return false, "email not allowed"
		}
	}
	if len(p.groups) > 0 && !anyIn(id.Groups, p.groups) {
		if _, present := id.Claims.Lookup(p.groupsClaim); !present {
			// Not a wrong group: the provider sends no groups at all (a missing scope or
			// mapper, or another claim name).
			return false, "groups claim absent (groups_claim " + p.groupsClaim + ")"
		}
		return false, "not in an allowed group"
	}
	for _, r := range p.claims {
		if !claimHasValue(id.Claims, r) {
			return false, "claim " + r.Claim + " not allowed"
		}
	}
	if p.expr != nil {
		if ok, err := evalCEL(ctx, p.expr, map[string]any{"claims": celClaims(id), "request": req}); !ok {
			return false, exprRefusal(err)
		}
	}
	return true, ""
}

// MissingScopes lists the required scopes that granted lacks; nil when none is missing.
func (p *Allow) MissingScopes(granted []string) []string {
	if p == nil {
		return nil
	}
	var missing []string
	for _, want := range p.scopes {
		if !slices.Contains(granted, want) {
			missing = append(missing, want)
		}
	}
	return missing
}

// RequiredScopes are the scopes every token must grant.
func (p *Allow) RequiredScopes() []string {
	if p == nil {
		return nil
	}
	return p.scopes
}

func claimHasValue(c claims.Set, r ClaimRule) bool {
	v, ok := c.Lookup(r.Claim)
	if !ok {
		return false
	}
	var have []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			have = append(have, claims.Render(e))
		}
	} else {
		have = []string{claims.Render(v)}
	}
	for _, h := range have {
		for _, want := range r.Values {
			if h == want {
				return true
			}
		}
	}
	return false
}

func set(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

func anyIn(have []string, want map[string]bool) bool {
	for _, h := range have {
		if want[h] {
			return true
		}
	}
	return false
}
