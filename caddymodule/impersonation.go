package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/caddyserver/caddy/v2"
)

// ImpersonationConfig, when present, makes the module accept impersonated sign-ins: the
// unsolicited responses of Auth0's "Sign in as User", and solicited logins whose identity
// carries an impersonator (Keycloak, RFC 8693) — under this policy.
type ImpersonationConfig struct {
	// Where impersonation is read from: auto, auth0, keycloak, act, or custom (the *_claim
	// paths below). auto tries Auth0's, then Keycloak's, then act. Default: auto.
	Claims string `json:"claims,omitempty"`
	// The prefix of Auth0 namespaced custom claims, e.g. "https://example.com/", under which
	// an Action may add impersonated/impersonator to the ID token. Default: none.
	Namespace string `json:"namespace,omitempty"`
	// custom: a boolean claim saying the login is impersonated. Default: none (the presence
	// of the impersonator ID claim says so).
	ImpersonatedClaim string `json:"impersonated_claim,omitempty"`
	// custom: the claim holding the impersonator's ID. Required with claims custom.
	ImpersonatorIDClaim string `json:"impersonator_id_claim,omitempty"`
	// custom: the claim holding the impersonator's email. Default: none.
	ImpersonatorEmailClaim string `json:"impersonator_email_claim,omitempty"`
	// Who may impersonate, by email or sub. Default: anyone the provider lets.
	Impersonators []string `json:"impersonators,omitempty"`
	// Who may never be impersonated: emails, subs, or email domains. When an entry is an
	// email or a domain, a target whose email the response does not carry is refused too.
	// Default: none.
	Protect []string `json:"protect,omitempty"`
	// A CEL expression over `impersonator` (id, email, username), `target` (the user's
	// claims, plus id) and `request` (host, method, path, remote_ip) that must be true.
	// Default: none.
	Expression string `json:"expression,omitempty"`
	// What the `state` of an unsolicited response must be: any (no check), fixed (equal to
	// state_value) or signed (minted by impersonation/state, single use). Default: any.
	State string `json:"state,omitempty"`
	// The value the state must equal with state fixed.
	StateValue string `json:"state_value,omitempty"`
	// Show a confirmation page before an unsolicited sign-in. Default: true.
	Confirm *bool `json:"confirm,omitempty"`
	// How old an unsolicited response's ID token (iat, auth_time) may be. Default: 5m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// The longest an impersonated session lasts (it also ends when its token does).
	// Default: 1h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// Where an unsolicited sign-in lands: a path on this site. Default: /.
	Landing string `json:"landing,omitempty"`
}

const (
	stateAny    = "any"
	stateFixed  = "fixed"
	stateSigned = "signed"
)

// impersonationPolicy is ImpersonationConfig compiled.
type impersonationPolicy struct {
	mapping       claimMapping
	impersonators map[string]bool
	protect       map[string]bool
	protectEmails bool // protect names an email or a domain, so the target's email must be known
	expr          cel.Program
	stateMode     string
	stateValue    string
	confirm       bool
	maxAge        time.Duration
	lifetime      time.Duration
	landing       string
}

func newImpersonationPolicy(c *ImpersonationConfig) (*impersonationPolicy, error) {
	p := &impersonationPolicy{
		mapping: claimMapping{mode: c.Claims, namespace: c.Namespace, impersonated: c.ImpersonatedClaim,
			impersonatorID: c.ImpersonatorIDClaim, impersonatorEm: c.ImpersonatorEmailClaim},
		impersonators: lowerSet(c.Impersonators),
		protect:       lowerSet(c.Protect),
		protectEmails: slices.ContainsFunc(c.Protect, func(s string) bool { return strings.ContainsAny(s, "@.") }),
		stateMode:     c.State,
		stateValue:    c.StateValue,
		confirm:       c.Confirm == nil || *c.Confirm,
		maxAge:        time.Duration(c.MaxAge),
		lifetime:      time.Duration(c.Lifetime),
		landing:       c.Landing,
	}
	custom := c.ImpersonatedClaim != "" || c.ImpersonatorIDClaim != "" || c.ImpersonatorEmailClaim != ""
	switch {
	case p.mapping.mode == "" && custom:
		p.mapping.mode = "custom"
	case p.mapping.mode == "":
		p.mapping.mode = "auto"
	}
	switch p.mapping.mode {
	case "auto", "auth0", "keycloak", "act":
		if custom {
			return nil, fmt.Errorf("claims %s does not take custom claim paths", p.mapping.mode)
		}
	case "custom":
		if c.ImpersonatorIDClaim == "" {
			return nil, errors.New("claims custom needs impersonator_id_claim")
		}
	default:
		return nil, fmt.Errorf("claims %q: want auto, auth0, keycloak, act or custom", c.Claims)
	}
	switch p.stateMode {
	case "":
		p.stateMode = stateAny
	case stateAny, stateSigned:
	case stateFixed:
		if len(p.stateValue) < 16 {
			return nil, errors.New("state fixed needs a value of at least 16 characters")
		}
	default:
		return nil, fmt.Errorf("state %q: want any, fixed or signed", c.State)
	}
	if p.maxAge == 0 {
		p.maxAge = 5 * time.Minute
	}
	if p.lifetime == 0 {
		p.lifetime = time.Hour
	}
	if p.maxAge < 0 || p.lifetime < 0 {
		return nil, errors.New("max_age and lifetime must not be negative")
	}
	if p.landing == "" {
		p.landing = "/"
	}
	if safeReturnTo(p.landing, "") == "" {
		return nil, fmt.Errorf("landing %q: want a path on this site", p.landing)
	}
	if c.Expression != "" {
		var err error
		if p.expr, err = compileCEL(c.Expression, "impersonator", "target", "request"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// decide reports whether the impersonation of target (target.imp is the impersonator) is
// allowed, and why not.
func (p *impersonationPolicy) decide(ctx context.Context, target *identity, req map[string]any) (bool, string) {
	imp := target.imp
	if imp == nil || (imp.ID == "" && imp.Email == "") {
		return false, "impersonator unknown"
	}
	if len(p.impersonators) > 0 && !p.isImpersonator(imp.ID, imp.Email) {
		return false, "impersonator not allowed"
	}
	if p.protected(target) {
		return false, "target is protected"
	}
	if p.protectEmails && target.email == "" {
		// Auth0's impersonation scope defaults to openid, which leaves the email out: an
		// unknown email could be a protected one.
		return false, "target email unknown, so protect cannot be checked"
	}
	if p.expr != nil {
		t := celClaims(target)
		t["id"] = target.subject
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

// isImpersonator: any of the identifiers is on the allowlist.
func (p *impersonationPolicy) isImpersonator(ids ...string) bool {
	for _, id := range ids {
		if id != "" && p.impersonators[strings.ToLower(id)] {
			return true
		}
	}
	return false
}

// protected: the target's sub, email or email domain is listed in protect.
func (p *impersonationPolicy) protected(target *identity) bool {
	email := strings.ToLower(target.email)
	_, domain, _ := strings.Cut(email, "@")
	return p.protect[strings.ToLower(target.subject)] || (email != "" && p.protect[email]) ||
		(domain != "" && p.protect[domain])
}

// admitImpersonation applies the policy to an impersonated identity in a solicited login; on
// refusal it has answered the request.
func (h *Handler) admitImpersonation(w http.ResponseWriter, r *http.Request, id *identity) bool {
	reason := "impersonation is not enabled"
	if h.imp != nil {
		var ok bool
		if ok, reason = h.imp.decide(r.Context(), id, requestVars(r)); ok {
			return true
		}
	}
	h.event(evImpersonationDenied, r, entryForIdentity(id).because(reason))
	h.writeError(w, r, errImpersonationRefused)
	return false
}
