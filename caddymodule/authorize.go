package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"sync"
	"time"

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
		id, err := identityOf(s, h.groupsClaim())
		if err != nil {
			return refuse(errDenied, evAccessDenied, "the session's claims do not decode").about(entryFor(s))
		}
		d = decision{id: id, until: s.Expires}
	}
	d.refusal = h.decide(r, s, d.id)
	h.decisions.put(s.ID, d, now)
	if d.refusal != nil {
		return d.refusal
	}
	return nil
}

// decide applies the impersonation policy (to an impersonated session) and the allow rules.
func (h *Handler) decide(r *http.Request, s *session.Session, id *claims.Identity) *refusal {
	req := requestVars(r)
	if s.Impersonated {
		if h.imp == nil {
			return refuse(errImpersonationRefused, evAccessDenied, "impersonated session, and impersonation is not enabled here").about(entryFor(s))
		}
		if ok, why := h.imp.Decide(r.Context(), id, req); !ok {
			return refuse(errImpersonationRefused, evAccessDenied, "impersonation: "+why).about(entryFor(s))
		}
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
	until   time.Time
}

// decisionCache keeps decisions per session ID, bounded: a full shard forgets its expired
// entries, then any one.
type decisionCache struct {
	seed   maphash.Seed
	shards [16]decisionShard
}

type decisionShard struct {
	mu sync.Mutex
	m  map[string]decision
}

const maxDecisionsPerShard = 4096

func newDecisionCache() *decisionCache {
	c := &decisionCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]decision)
	}
	return c
}

func (c *decisionCache) shard(id string) *decisionShard {
	return &c.shards[maphash.String(c.seed, id)%uint64(len(c.shards))]
}

func (c *decisionCache) get(id string, now time.Time) (decision, bool) {
	sh := c.shard(id)
	sh.mu.Lock()
	d, ok := sh.m[id]
	sh.mu.Unlock()
	if !ok || !now.Before(d.until) {
		return decision{}, false
	}
	return d, true
}

func (c *decisionCache) put(id string, d decision, now time.Time) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[id]; !ok && len(sh.m) >= maxDecisionsPerShard {
		for k, old := range sh.m {
			if !now.Before(old.until) {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < maxDecisionsPerShard {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[id] = d
}

func (c *decisionCache) drop(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// len is the number of decisions kept.
func (c *decisionCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
