package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

// AllowConfig says who may in. Every category present must admit the user, and the
// expression must be true.
type AllowConfig struct {
	// Admit users whose verified email is one of these. Default: none.
	Emails []string `json:"emails,omitempty"`
	// Admit users whose verified email is at one of these domains (with emails: either admits).
	// Default: none.
	Domains []string `json:"domains,omitempty"`
	// Admit members of any of these groups. Default: none.
	Groups []string `json:"groups,omitempty"`
	// The claim that lists the user's groups, for this rule and the groups header.
	// Default: groups.
	GroupsClaim string `json:"groups_claim,omitempty"`
	// Each admits users whose claim has one of the values. Default: none.
	Claims []ClaimRule `json:"claims,omitempty"`
	// A CEL expression over `claims` (the user's claims) and `request` (host, method, path,
	// remote_ip) that must be true. Default: none.
	Expression string `json:"expression,omitempty"`
}

// ClaimRule admits users whose claim (a name or dotted path) has one of the values.
type ClaimRule struct {
	// The claim's name or dotted path.
	Claim string `json:"claim"`
	// Accepted values; for a list claim, any element matching admits.
	Values []string `json:"values"`
}

// identity is who the provider says signed in: the merged claims and the fields read from them.
type identity struct {
	claims        claims
	subject       string
	email         string
	emailVerified bool
	name          string
	username      string
	groups        []string
	imp           *impersonator
}

// allowPolicy is AllowConfig compiled. A nil policy admits everyone.
type allowPolicy struct {
	emails, domains, groups map[string]bool
	claims                  []ClaimRule
	expr                    cel.Program
}

func newAllowPolicy(c *AllowConfig) (*allowPolicy, error) {
	if c == nil {
		return nil, nil
	}
	p := &allowPolicy{
		emails:  lowerSet(c.Emails),
		domains: lowerSet(c.Domains),
		groups:  set(c.Groups),
		claims:  c.Claims,
	}
	for _, r := range c.Claims {
		if r.Claim == "" || len(r.Values) == 0 {
			return nil, errors.New("claim needs a name and at least one value")
		}
	}
	if c.Expression != "" {
		var err error
		if p.expr, err = compileCEL(c.Expression, "claims", "request"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// admit reports whether the identity may in, and if not, why (for the audit log).
func (p *allowPolicy) admit(ctx context.Context, id *identity, req map[string]any) (bool, string) {
	if p == nil {
		return true, ""
	}
	if len(p.emails)+len(p.domains) > 0 {
		email := strings.ToLower(id.email)
		_, domain, _ := strings.Cut(email, "@")
		if !id.emailVerified || email == "" || !(p.emails[email] || p.domains[domain]) {
			return false, "email not allowed"
		}
	}
	if len(p.groups) > 0 && !anyIn(id.groups, p.groups) {
		return false, "not in an allowed group"
	}
	for _, r := range p.claims {
		if !claimHasValue(id.claims, r) {
			return false, "claim " + r.Claim + " not allowed"
		}
	}
	if p.expr != nil && !evalCEL(ctx, p.expr, map[string]any{"claims": celClaims(id), "request": req}) {
		return false, "expression denied"
	}
	return true, ""
}

// celClaims is what expressions see of the user's claims: all of them, except an email that
// is not verified (an expression like claims.email.endsWith(...) must not admit a typed one).
func celClaims(id *identity) map[string]any {
	c := make(map[string]any, len(id.claims)+1)
	for k, v := range id.claims {
		c[k] = v
	}
	if !id.emailVerified {
		delete(c, "email")
	}
	return c
}

func claimHasValue(c claims, r ClaimRule) bool {
	v, ok := c.lookup(r.Claim)
	if !ok {
		return false
	}
	var have []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			have = append(have, render(e))
		}
	} else {
		have = []string{render(v)}
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

// celCostLimit bounds the work one evaluation may do, so no expression can stall a login.
const celCostLimit = 100000

// compileCEL compiles a boolean expression over the named map variables.
func compileCEL(expr string, vars ...string) (cel.Program, error) {
	opts := make([]cel.EnvOption, 0, len(vars))
	for _, v := range vars {
		opts = append(opts, cel.Variable(v, cel.MapType(cel.StringType, cel.DynType)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("expression %q does not compile: %w", expr, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("expression %q is %s, not boolean", expr, ast.OutputType())
	}
	return env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
}

// evalCEL is true only when the expression evaluates to true; an error (a missing claim, say)
// denies.
func evalCEL(ctx context.Context, p cel.Program, vars map[string]any) bool {
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	out, _, err := p.ContextEval(ctx, vars)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

func set(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

func lowerSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[strings.ToLower(s)] = true
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
