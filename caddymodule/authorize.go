package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// A session says who the user is; the handler serving a request decides, on every request,
// whether that user may have it: its allow rules, and for an impersonated session its
// impersonation policy. A decision that does not read the request is kept per session
// (bounded, never past the session's end); one that does is made again each time.

// providerKey names the provider and client a session belongs to.
func providerKey(issuer, clientID string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + clientID))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

// authorize decides whether the session may have this request.
func (h *Handler) authorize(r *http.Request, s *session.Session) error {
	return h.authorizeAs(r, s, nil, false)
}

// authorizeAs decides whether the session may have this request. id is its identity when
// known (nil: read from the session); bearer says the session is a bearer token's, whose
// missing scopes get RFC 6750's insufficient_scope.
func (h *Handler) authorizeAs(r *http.Request, s *session.Session, id *claims.Identity, bearer bool) error {
	if h.allow == nil && !s.Impersonated {
		return nil
	}
	now := h.now()
	d, cached := h.decisions.get(s.ID, now)
	if cached && !h.needs.Request {
		if d.refusal != nil {
			return d.refusal.quiet()
		}
		return nil
	}
	if !cached {
		if id == nil {
			var err error
			if id, err = identityOf(s, h.groupsClaim()); err != nil {
				return refuse(errDenied, evAccessDenied, "the session's claims do not decode").about(entryFor(s))
			}
		}
		d = decision{id: id}
	}
	d.refusal = h.decide(r, s, d.id, bearer)
	if !h.needs.Request {
		// The decision stands for every request of the session: the identity it was made on
		// need not be kept (10,000 sessions would hold megabytes of claims for nothing).
		d.id = nil
	}
	h.decisions.put(s.ID, d, s.Expires, now)
	if d.refusal != nil {
		return d.refusal
	}
	return nil
}

// decide applies the impersonation policy (to an impersonated session) and the allow rules.
func (h *Handler) decide(r *http.Request, s *session.Session, id *claims.Identity, bearer bool) *refusal {
	req := requestVars(r)
	if s.Impersonated {
		if h.imp == nil {
			return refuse(errImpersonationRefused, evAccessDenied, "impersonated session, and impersonation is not enabled here").about(entryFor(s))
		}
		if ok, why := h.imp.Decide(r.Context(), id, req); !ok {
			return refuse(errImpersonationRefused, evAccessDenied, "impersonation: "+why).about(entryFor(s))
		}
	}
	if missing := h.allow.MissingScopes(id.Scopes); bearer && missing != nil {
		return h.insufficientScope(s, missing)
	}
	if ok, why := h.allow.Admit(r.Context(), id, req); !ok {
		return refuse(errDenied, evAccessDenied, why).about(entryFor(s))
	}
	return nil
}

// identityOf is the identity a session carries, for the rules: its subject, verified email,
// groups, impersonator, and the claims kept for the rules.
func identityOf(s *session.Session, groupsClaim string) (*claims.Identity, error) {
	c := claims.Set{}
	if s.RuleClaims != "" {
		if err := json.Unmarshal([]byte(s.RuleClaims), &c); err != nil {
			return nil, err
		}
	}
	c["sub"] = s.Subject
	c["email_verified"] = s.EmailVerified
	if len(s.Groups) > 0 {
		groups := make([]any, len(s.Groups))
		for i, g := range s.Groups {
			groups[i] = g
		}
		c[groupsClaim] = groups
	}
	if s.Email != "" {
		c["email"] = s.Email
	}
	id := claims.NewIdentity(c, groupsClaim)
	id.Groups, id.Name, id.Username = s.Groups, s.Name, s.PreferredUsername
	id.Scopes = strings.Fields(s.Scopes)
	if s.Impersonated {
		id.Imp = &claims.Impersonator{ID: s.ImpersonatorID, Email: s.ImpersonatorEmail, EmailVerified: s.ImpersonatorEmailVerified}
	}
	return id, nil
}

// ruleClaims is the JSON of the claims the rules read, taken from a verified identity.
func (h *Handler) ruleClaims(c claims.Set) string {
	keep := claims.Set{}
	if h.needs.All {
		keep = c
	} else {
		for _, names := range [][]string{h.needs.Claims, h.SessionClaims} {
			for _, name := range names {
				if v, ok := c[name]; ok {
					keep[name] = v
				}
			}
		}
	}
	if len(keep) == 0 {
		return ""
	}
	b, err := json.Marshal(keep)
	if err != nil {
		return ""
	}
	return string(b)
}

// decision is what a handler decided for one session.
type decision struct {
	id      *claims.Identity
	refusal *refusal // nil: allowed
}

// maxDecisionsPerShard bounds the decisions kept: 16 shards of it.
const maxDecisionsPerShard = 4096

// newDecisionCache keeps decisions per session ID, never past the session's end.
func newDecisionCache() *expiringCache[decision] {
	return newExpiringCache[decision](maxDecisionsPerShard)
}
