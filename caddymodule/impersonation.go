package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/policy"
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
	// Who may impersonate: IDs (sub; Keycloak's impersonator.id; act.sub), compared exactly,
	// or emails, compared with ASCII-only case folding and only with an impersonator email
	// the provider vouches for (see trust_impersonator_email). Default: anyone the provider lets.
	Impersonators []string `json:"impersonators,omitempty"`
	// Count the impersonator emails the provider sends (Auth0's impersonator.email, the
	// custom impersonator_email_claim) as verified: they carry no verification of their own.
	// Turn on only when every account that can impersonate has an email its owner cannot
	// change to someone else's. Default: false.
	TrustImpersonatorEmail bool `json:"trust_impersonator_email,omitempty"`
	// Who may never be impersonated: subs (exact), emails, email domains ("example.com", that
	// domain only) or ".example.com" (every domain under it). When an entry is an email or a
	// domain, a target whose email the response does not carry is refused too. Default: none.
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

// stateMode is the policy on the state of unsolicited responses.
type stateMode uint8

const (
	stateAny    stateMode = iota // no check
	stateFixed                   // equal to state_value
	stateSigned                  // minted by impersonation/state, single use
)

var stateModes = map[string]stateMode{"": stateAny, "any": stateAny, "fixed": stateFixed, "signed": stateSigned}

// impersonationPolicy is ImpersonationConfig compiled.
type impersonationPolicy struct {
	*policy.Impersonation // who may impersonate whom
	mapping               claims.Mapping
	stateMode             stateMode
	stateValue            string
	confirm               bool
	maxAge                time.Duration
	lifetime              time.Duration
	landing               string
}

func newImpersonationPolicy(c *ImpersonationConfig) (*impersonationPolicy, error) {
	p := &impersonationPolicy{
		mapping: claims.Mapping{Namespace: c.Namespace, Impersonated: c.ImpersonatedClaim,
			ImpersonatorID: c.ImpersonatorIDClaim, ImpersonatorEmail: c.ImpersonatorEmailClaim,
			TrustEmail: c.TrustImpersonatorEmail},
		stateValue: c.StateValue,
		confirm:    c.Confirm == nil || *c.Confirm,
		maxAge:     time.Duration(c.MaxAge),
		lifetime:   time.Duration(c.Lifetime),
		landing:    c.Landing,
	}
	custom := c.ImpersonatedClaim != "" || c.ImpersonatorIDClaim != "" || c.ImpersonatorEmailClaim != ""
	mode := c.Claims
	switch {
	case mode == "" && custom:
		mode = "custom"
	case mode == "":
		mode = "auto"
	}
	var ok bool
	if p.mapping.Mode, ok = claims.ParseMode(mode); !ok {
		return nil, fmt.Errorf("claims %q: want auto, auth0, keycloak, act or custom", c.Claims)
	}
	switch {
	case p.mapping.Mode != claims.ModeCustom && custom:
		return nil, fmt.Errorf("claims %s does not take custom claim paths", mode)
	case p.mapping.Mode == claims.ModeCustom && c.ImpersonatorIDClaim == "":
		return nil, errors.New("claims custom needs impersonator_id_claim")
	}
	if p.stateMode, ok = stateModes[c.State]; !ok {
		return nil, fmt.Errorf("state %q: want any, fixed or signed", c.State)
	}
	if p.stateMode == stateFixed && len(p.stateValue) < 16 {
		return nil, errors.New("state fixed needs a value of at least 16 characters")
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
	var err error
	p.Impersonation, err = policy.NewImpersonation(policy.ImpersonationRules{
		Impersonators: c.Impersonators, Protect: c.Protect, Expression: c.Expression})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// admitImpersonation applies the policy to an impersonated identity in a solicited login.
func (h *Handler) admitImpersonation(r *http.Request, id *claims.Identity) error {
	if h.imp == nil {
		return impersonationDenied("impersonation is not enabled").about(entryForIdentity(id))
	}
	if ok, why := h.imp.Decide(r.Context(), id, requestVars(r)); !ok {
		return impersonationDenied(why).about(entryForIdentity(id))
	}
	return nil
}

// serveMintState gives a signed-in, allowed impersonator a single-use state to paste into the
// provider's impersonation form.
func (h *Handler) serveMintState(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return refuse(errMethod, "", "")
	}
	s := h.currentSession(w, r)
	if s == nil {
		return refuse(errUnauthenticated, "", "")
	}
	if err := h.authorize(r, s); err != nil {
		return err
	}
	// s.Email is set only when verified.
	if s.Impersonated || (h.imp.Restricted() && !h.imp.IsImpersonator(s.Subject, s.Email)) {
		return refuse(errDenied, "", "")
	}
	now := h.now()
	writeJSON(w, http.StatusOK, mintedState{State: h.states.mintSigned(now, s.Subject), ExpiresAt: now.Add(signedStateTTL).Unix()})
	return nil
}

// mintedState is the answer of impersonation/state.
type mintedState struct {
	State     string `json:"state"`
	ExpiresAt int64  `json:"expires_at"`
}
