package policy

import (
	"context"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// ImpersonationRules are who may impersonate whom, as configured.
type ImpersonationRules struct {
	Impersonators []string // by email or sub; empty = anyone the provider lets
	Protect       []string // targets never impersonated: emails, subs, email domains
	Expression    string   // CEL over impersonator, target and request
}

// Impersonation is ImpersonationRules compiled.
type Impersonation struct {
	impersonators map[string]bool
	protect       map[string]bool
	protectEmails bool // protect names an email or a domain, so the target's email must be known
	expr          cel.Program
}

// NewImpersonation compiles the rules.
func NewImpersonation(r ImpersonationRules) (*Impersonation, error) {
	p := &Impersonation{
		impersonators: lowerSet(r.Impersonators),
		protect:       lowerSet(r.Protect),
		protectEmails: slices.ContainsFunc(r.Protect, func(s string) bool { return strings.ContainsAny(s, "@.") }),
	}
	if r.Expression != "" {
		var err error
		if p.expr, err = compileCEL(r.Expression, "impersonator", "target", "request"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Decide reports whether the impersonation of target (target.Imp is the impersonator) is
// allowed, and why not.
func (p *Impersonation) Decide(ctx context.Context, target *claims.Identity, req map[string]any) (bool, string) {
	imp := target.Imp
	if imp == nil || (imp.ID == "" && imp.Email == "") {
		return false, "impersonator unknown"
	}
	if len(p.impersonators) > 0 && !p.IsImpersonator(imp.ID, imp.Email) {
		return false, "impersonator not allowed"
	}
	if p.protected(target) {
		return false, "target is protected"
	}
	if p.protectEmails && target.Email == "" {
		// Auth0's impersonation scope defaults to openid, which leaves the email out: an
		// unknown email could be a protected one.
		return false, "target email unknown, so protect cannot be checked"
	}
	if p.expr != nil {
		t := celClaims(target)
		t["id"] = target.Subject
		vars := map[string]any{
			"impersonator": map[string]any{"id": imp.ID, "email": imp.Email, "username": imp.Username},
			"target":       t,
			"request":      req,
		}
		if !evalCEL(ctx, p.expr, vars) {
			return false, "expression denied"
		}
	}
	return true, ""
}

// Restricted reports whether only listed impersonators may impersonate.
func (p *Impersonation) Restricted() bool { return len(p.impersonators) > 0 }

// IsImpersonator: any of the identifiers is on the allowlist.
func (p *Impersonation) IsImpersonator(ids ...string) bool {
	for _, id := range ids {
		if id != "" && p.impersonators[strings.ToLower(id)] {
			return true
		}
	}
	return false
}

// protected: the target's sub, email or email domain is listed in protect.
func (p *Impersonation) protected(target *claims.Identity) bool {
	email := strings.ToLower(target.Email)
	_, domain, _ := strings.Cut(email, "@")
	return p.protect[strings.ToLower(target.Subject)] || (email != "" && p.protect[email]) ||
		(domain != "" && p.protect[domain])
}
