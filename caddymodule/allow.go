package caddymodule

import "github.com/relyingparty/caddy-oidc-auth/internal/policy"

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
	// OAuth scopes that must all have been granted: with a bearer token, its scope (or scp)
	// claim; with a session, the scopes of the token response at sign-in (those requested when
	// the provider does not say). A bearer token lacking one gets 403 insufficient_scope.
	// Default: none.
	Scopes []string `json:"scopes,omitempty"`
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

// compile turns the configuration into the policy the flows apply; nil admits everyone.
func (c *AllowConfig) compile() (*policy.Allow, error) {
	if c == nil {
		return nil, nil
	}
	rules := policy.AllowRules{Emails: c.Emails, Domains: c.Domains, Groups: c.Groups, GroupsClaim: c.GroupsClaim,
		Scopes: c.Scopes, Expression: c.Expression}
	for _, r := range c.Claims {
		rules.Claims = append(rules.Claims, policy.ClaimRule{Claim: r.Claim, Values: r.Values})
	}
	return policy.NewAllow(rules)
}
