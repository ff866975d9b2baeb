package policy

import (
	"context"
	"maps"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// ImpersonationRules are who may impersonate whom, as configured.
type ImpersonationRules struct {
	// Who may impersonate: IDs, compared exactly, and emails, compared (ASCII case folded)
	// with an impersonator email only when the provider vouches for it. Empty = anyone the
	// provider lets.
	Impersonators []string
	// Who may never be impersonated: subjects (exact), emails, domains ("example.com", that
	// domain only) and subdomain patterns (".example.com", every domain under it).
	Protect    []string
	Expression string // CEL over impersonator, target and request
}

// Impersonation is ImpersonationRules compiled.
type Impersonation struct {
	ids, emails map[string]bool // the allowlist
	protect     protectList
	expr        cel.Program
	needs       Needs
}

type protectList struct {
	subjects, emails, domains map[string]bool
	suffixes                  []string // ".example.com"
	byEmail                   bool     // an email, domain or suffix is listed: the target's email must be known
}

// NewImpersonation compiles the rules.
func NewImpersonation(r ImpersonationRules) (*Impersonation, error) {
	p := &Impersonation{ids: set(r.Impersonators), emails: map[string]bool{}}
	for _, v := range r.Impersonators {
		if strings.Contains(v, "@") {
			if err := asciiOnly("impersonators", []string{v}); err != nil {
				return nil, err
			}
			p.emails[foldASCII(v)] = true
		}
	}
	p.protect = protectList{subjects: set(r.Protect), emails: map[string]bool{}, domains: map[string]bool{}}
	for _, v := range r.Protect {
		switch {
		case strings.Contains(v, "@"):
			p.protect.emails[foldASCII(v)] = true
		case strings.HasPrefix(v, "."):
			p.protect.suffixes = append(p.protect.suffixes, foldASCII(v))
		case strings.Contains(v, "."):
			p.protect.domains[foldASCII(v)] = true
		default:
			continue // a subject only
		}
		if err := asciiOnly("protect", []string{v}); err != nil {
			return nil, err
		}
		p.protect.byEmail = true
	}
	if p.protect.byEmail {
		// Protection compares the target's email whether verified or not.
		p.needs.add(Needs{Claims: []string{"email"}})
	}
	if r.Expression != "" {
		prg, ast, err := compileCEL(r.Expression, "impersonator", "target", "request")
		if err != nil {
			return nil, err
		}
		p.expr = prg
		p.needs.add(exprNeeds(ast, "target"))
	}
	return p, nil
}

// Decide reports whether the impersonation of target (target.Imp is the impersonator) is
// allowed, and why not.
func (p *Impersonation) Decide(ctx context.Context, target *claims.Identity, req map[string]any) (bool, string) {
	imp := target.Imp
	switch {
	case imp != nil && imp.Unread != "":
		return false, "impersonation shown the " + imp.Unread + " way, which the claims mode does not read"
	case imp == nil || (imp.ID == "" && imp.Email == ""):
		return false, "impersonator unknown"
	case p.Restricted() && !p.IsImpersonator(imp.ID, verifiedOnly(imp.Email, imp.EmailVerified)):
		return false, "impersonator not allowed"
	case p.protected(target):
		return false, "target is protected"
	case p.protect.byEmail && target.Email == "":
		// Auth0's impersonation scope defaults to openid, which leaves the email out: an
		// unknown email could be a protected one.
		return false, "target email unknown, so protect cannot be checked"
	}
	if p.expr != nil {
		// A copy: id is added, and the identity's claims are never written.
		t := maps.Clone(celClaims(target))
		t["id"] = target.Subject
		vars := map[string]any{
			"impersonator": map[string]any{"id": imp.ID, "email": verifiedOnly(imp.Email, imp.EmailVerified),
				"email_verified": imp.EmailVerified, "username": imp.Username},
			"target":  t,
			"request": req,
		}
		if ok, err := evalCEL(ctx, p.expr, vars); !ok {
			return false, exprRefusal(err)
		}
	}
	return true, ""
}

// Needs is what the policy reads of the target beyond the standard identity.
func (p *Impersonation) Needs() Needs { return p.needs }

// Restricted reports whether only listed impersonators may impersonate.
func (p *Impersonation) Restricted() bool { return len(p.ids) > 0 }

// IsImpersonator reports whether the subject is listed, or the verified email ("" when there
// is none) is.
func (p *Impersonation) IsImpersonator(subject, verifiedEmail string) bool {
	return (subject != "" && p.ids[subject]) || (verifiedEmail != "" && p.emails[foldASCII(verifiedEmail)])
}

// protected: the target's subject, email (verified or not: protecting errs on the safe side),
// email domain or a parent domain is listed.
func (p *Impersonation) protected(target *claims.Identity) bool {
	if p.protect.subjects[target.Subject] {
		return true
	}
	if target.Email == "" {
		return false
	}
	domain := emailDomain(target.Email)
	if p.protect.emails[foldASCII(target.Email)] || p.protect.domains[domain] {
		return true
	}
	for _, suffix := range p.protect.suffixes {
		if strings.HasSuffix(domain, suffix) {
			return true
		}
	}
	return false
}

func verifiedOnly(email string, verified bool) string {
	if verified {
		return email
	}
	return ""
}
