package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// BearerConfig lets API clients in with an OAuth 2.0 access token from the provider, sent as
// `Authorization: Bearer <JWT>` (RFC 6750). The token is verified here — signature by the
// provider's keys, iss, aud, exp, nbf — and gets the same headers, placeholders and allow
// rules as a session. An RFC 8693 `act` claim is impersonation, under the impersonation policy.
// A request with a bad token is answered 401 with `WWW-Authenticate: Bearer
// error="invalid_token"`, never redirected.
type BearerConfig struct {
	// The audience (aud) a token must be for: the API's identifier at the provider. It must
	// differ from the client ID, which is the audience of ID tokens. Default: the handler's
	// audience (required if that is unset).
	Audience string `json:"audience,omitempty"`
	// How far the provider's clock and this server's may disagree when exp, nbf and iat are
	// checked. Default: 30s; at most 5m.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`
	// Accept bearer tokens only: session cookies are not read on this route and no one is
	// sent to sign in. Default: false (a request without a token is handled as without bearer).
	Only bool `json:"only,omitempty"`
}

const (
	defaultBearerSkew = 30 * time.Second
	maxBearerSkew     = 5 * time.Minute
	// maxBearerToken refuses larger tokens before any work; a token larger than
	// maxCachedBearer is cached by its digest, so the keys stay within 16 × maxBearersPerShard
	// × 4 KB.
	maxBearerToken     = 16 << 10
	maxCachedBearer    = 4 << 10
	maxBearersPerShard = 512
)

// bearerAlgs are the signatures accepted: asymmetric only. An HMAC token would be signed with
// a secret the provider shares with its clients; none is never a signature.
var bearerAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384,
	jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// bearer is a verified token, kept until it expires.
type bearer struct {
	s  *session.Session
	id *claims.Identity
}

// bearerOffer is what a request offers as a bearer token.
type bearerOffer struct {
	raw     string
	present bool     // the request has Authorization: Bearer
	bad     *refusal // the offer is malformed (two Authorization headers, an empty token)
}

// readBearer reads the token of the request's Authorization: Bearer header (the scheme in any
// case, followed by spaces or tabs, RFC 7235). Another scheme is no offer: it is the
// application's business. A Bearer value anywhere among several Authorization fields is an
// offer, and a malformed one: nothing unverified passes for a verified token.
func readBearer(h http.Header) bearerOffer {
	vals := h["Authorization"]
	found := -1
	for i, v := range vals {
		if isBearerScheme(v) {
			found = i
			break
		}
	}
	switch {
	case found < 0:
		return bearerOffer{}
	case len(vals) > 1:
		return bearerOffer{present: true, bad: bearerRefused(errBearerRequest, "more than one Authorization header")}
	}
	tok := strings.Trim(strings.TrimLeft(vals[0], " \t")[len("Bearer"):], " \t")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return bearerOffer{present: true, bad: bearerRefused(errBearerRequest, "not one bearer token")}
	}
	return bearerOffer{raw: tok, present: true}
}

// isBearerScheme reports whether an Authorization value uses the Bearer scheme.
func isBearerScheme(v string) bool {
	const scheme = "Bearer"
	v = strings.TrimLeft(v, " \t")
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ' || v[len(scheme)] == '\t')
}

// serveBearer authenticates a request by its bearer token, authorizes it as a session would
// be, and sends it on. It never redirects.
func (h *Handler) serveBearer(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, cred bearerOffer) error {
	s, err := h.bearerAdmitted(r, cred)
	if err != nil {
		return h.answer(w, r, err)
	}
	return h.pass(w, r, next, s)
}

// bearerAdmitted is the session of the request's bearer token when it is good and admitted
// here: verified (or kept from an earlier request), not revoked, authorized, and — at its
// first use — registered and audited.
func (h *Handler) bearerAdmitted(r *http.Request, cred bearerOffer) (*session.Session, error) {
	switch {
	case cred.bad != nil:
		return nil, cred.bad
	case !cred.present:
		return nil, bearerMissing()
	}
	b, key, fresh, err := h.bearerSession(r, cred.raw)
	if err != nil {
		return nil, err
	}
	if h.store.Revoked(b.s.ID) {
		// Its subject's sessions were revoked (admin API, back-channel logout) after the token
		// was first used: it goes with them, on every instance.
		return nil, bearerRefused(errInvalidToken, "revoked").about(entryFor(b.s))
	}
	if err := h.authorizeAs(r, b.s, b.id, true); err != nil {
		var rf *refusal
		if !errors.As(err, &rf) {
			return nil, err
		}
		c := *rf // the decision cache shares rf with concurrent requests
		c.api = true
		if fresh && b.s.Impersonated && c.event == evAccessDenied {
			// The token's first use is its sign-in: an impersonation refused then is recorded
			// as such.
			c.event = evImpersonationDenied
		}
		return nil, &c
	}
	if fresh {
		// Registered as a session is, so that revoking its subject revokes the token too.
		if err := h.store.Register(r.Context(), recordOf(b.s)); err != nil {
			h.bearers.drop(key) // registered on a later request, or never accepted
			return nil, refuse(errStoreUnavailable, evSessionRejected, "bearer token: store unavailable: "+
				err.Error()).about(entryFor(b.s)).causedBy(err).asAPI()
		}
		ev := evLogin
		if b.s.Impersonated {
			ev = evImpersonationStarted
		}
		h.event(ev, r, entryFor(b.s).because("bearer token"))
	}
	return b.s, nil
}

// bearerMissing answers a request that offers no token where one is required: 401 with the
// bare challenge (RFC 6750 §3: no error code when no credential was sent).
func bearerMissing() *refusal {
	rf := refuse(errUnauthenticated, "", "").asAPI()
	rf.challenge = "Bearer"
	return rf
}

// bearerSession returns the token's verified session: kept from an earlier request, or
// verified now (fresh) and kept until the token expires.
func (h *Handler) bearerSession(r *http.Request, raw string) (b *bearer, key string, fresh bool, err error) {
	now := h.now()
	key = raw
	if len(raw) > maxCachedBearer {
		// A large token is kept by its whole digest, so the cache's memory stays bounded.
		sum := sha256.Sum256([]byte(raw))
		key = string(sum[:])
	}
	if b, ok := h.bearers.get(key, now); ok {
		return b, key, false, nil
	}
	if b, err = h.verifyBearer(r, raw, now); err != nil {
		return nil, key, false, err
	}
	h.bearers.put(key, b, b.s.Expires, now)
	return b, key, true, nil
}

// verifyBearer checks a token as RFC 9068 and RFC 6750 ask and builds the session it stands
// for. Every refusal is invalid_token; the reason says which check failed, never what the
// token holds.
func (h *Handler) verifyBearer(r *http.Request, raw string, now time.Time) (*bearer, error) {
	if len(raw) > maxBearerToken {
		return nil, bearerRefused(errInvalidToken, "token too large")
	}
	jws, err := jose.ParseSignedCompact(raw, bearerAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, bearerRefused(errInvalidToken, "not a JWT signed with an accepted algorithm")
	}
	hdr := jws.Signatures[0].Protected
	if !accessTokenTyp(hdr.ExtraHeaders[jose.HeaderType]) {
		return nil, bearerRefused(errInvalidToken, "token type is not an access token")
	}
	d, err := h.provider.get()
	if err != nil {
		return nil, refuse(errUnreachable, evSessionRejected, "bearer token: provider unreachable: "+causeOf(err)).causedBy(err).asAPI()
	}
	payload, err := d.keys.verify(h.provider.ctx, jws)
	if err != nil {
		if errors.Is(err, errKeysUnavailable) {
			return nil, refuse(errUnreachable, evSessionRejected, "bearer token: provider keys unavailable").causedBy(err).asAPI()
		}
		return nil, bearerRefused(errInvalidToken, err.Error())
	}
	c := claims.Set{}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, bearerRefused(errInvalidToken, "claims do not decode")
	}
	exp, why := h.checkBearerClaims(c, d.issuer, now)
	if why != "" {
		return nil, bearerRefused(errInvalidToken, why)
	}
	id := claims.NewIdentity(c, h.groupsClaim())
	id.Scopes = claims.Scopes(c)
	id.Imp = h.tokenActor(c)
	if id.Imp != nil && h.imp != nil {
		// An impersonation lasts no longer by token than by session: lifetime counts from iat.
		iat, present, _ := numericDate(c, "iat")
		switch {
		case !present:
			return nil, bearerRefused(errInvalidToken, "an impersonating token has no iat")
		case !now.Before(iat.Add(h.imp.lifetime)):
			return nil, bearerRefused(errInvalidToken, "impersonation older than its lifetime")
		case iat.Add(h.imp.lifetime).Before(exp):
			exp = iat.Add(h.imp.lifetime)
		}
	}
	s := &session.Session{
		ID:       bearerID(raw),
		Provider: h.provKey,
		Created:  now, LastSeen: now, Expires: exp, TokenExpiry: exp,
		TokenAudience: h.bearerAudience,
	}
	h.fillIdentity(s, id)
	if h.headers.accessToken != "" && !s.Impersonated {
		s.AccessToken = raw
	}
	return &bearer{s: s, id: id}, nil
}

// tokenActor reads who acts for the token's subject: RFC 8693's act, whatever the route's
// claims mode, else what the impersonation block reads (its namespace or custom claims), else
// any known signal — which, with no impersonation block, makes the token refused.
func (h *Handler) tokenActor(c claims.Set) *claims.Impersonator {
	mapping := claims.Mapping{Mode: claims.ModeAuto}
	if h.imp != nil {
		mapping = h.imp.mapping
	}
	if c["act"] != nil {
		mapping = claims.Mapping{Mode: claims.ModeAct, TrustEmail: mapping.TrustEmail}
	}
	if imp, ok := mapping.Detect(c); ok {
		return imp
	}
	return nil
}

// bearerID names a token in the caches and the audit log: a digest, never the token.
func bearerID(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return "bearer-" + base64.RawURLEncoding.EncodeToString(sum[:12])
}

// checkBearerClaims applies the claim checks of RFC 9068 §4 with a bounded clock skew, and
// refuses an ID token presented as an access token. It returns the token's expiry.
func (h *Handler) checkBearerClaims(c claims.Set, issuer string, now time.Time) (time.Time, string) {
	skew := time.Duration(h.Bearer.ClockSkew)
	aud := c.Strings("aud")
	exp, hasExp, okExp := numericDate(c, "exp")
	nbf, hasNbf, okNbf := numericDate(c, "nbf")
	iat, hasIat, okIat := numericDate(c, "iat")
	typ, _ := c["typ"].(string) // Keycloak: "Bearer" for access tokens, "ID" for ID tokens
	switch {
	case !okExp || !okNbf || !okIat:
		// A time that does not read as one must not pass for no time at all.
		return time.Time{}, "malformed time claim"
	case c.Str("iss") != issuer:
		return time.Time{}, "issuer is not the provider"
	case !slices.Contains(aud, h.bearerAudience):
		return time.Time{}, "audience is not this API"
	case slices.Contains(aud, h.ClientID) || c["nonce"] != nil || (typ != "" && !strings.EqualFold(typ, "Bearer")):
		return time.Time{}, "an ID token is not an access token"
	case !hasExp:
		return time.Time{}, "token has no expiry"
	case !now.Before(exp.Add(skew)):
		return time.Time{}, "token expired"
	case hasNbf && nbf.After(now.Add(skew)):
		return time.Time{}, "token not valid yet"
	case hasIat && iat.After(now.Add(skew)):
		return time.Time{}, "token issued in the future"
	case c.Str("sub") == "":
		return time.Time{}, "token has no subject"
	}
	if c["act"] != nil && claims.Set(asObject(c["act"])).Str("sub") == "" {
		// An actor the rules could not name must not pass for no actor at all.
		return time.Time{}, "act claim names no actor"
	}
	if !exp.After(now) {
		// Within the skew: good for the moment it has left, at least a second.
		exp = now.Add(time.Second)
	}
	return exp, ""
}

// accessTokenTyp accepts the JOSE typ of an access token: RFC 9068's at+jwt, or JWT or none,
// which is what Auth0, Keycloak and most providers send.
func accessTokenTyp(v any) bool {
	if v == nil {
		return true
	}
	typ, ok := v.(string)
	if !ok {
		return false
	}
	typ = strings.TrimPrefix(strings.ToLower(typ), "application/")
	return typ == "at+jwt" || typ == "jwt"
}

// numericDate reads a NumericDate claim (seconds since the epoch, possibly fractional):
// present says the claim is there, ok that it reads as a time (absent is ok).
func numericDate(c claims.Set, name string) (t time.Time, present, ok bool) {
	v := c[name]
	if v == nil { // absent, or null
		return time.Time{}, false, true
	}
	f, isNumber := v.(float64)
	if !isNumber || f < 0 || f > 1e11 {
		return time.Time{}, true, false
	}
	return time.Unix(int64(f), 0), true, true
}

// bearerRefused is a refused bearer token: 401 (or 400) with the RFC 6750 challenge, recorded
// as session_rejected.
func bearerRefused(page *pageError, reason string) *refusal {
	return refuse(page, evSessionRejected, "bearer token: "+reason).withChallenge(page.Code, reason).asAPI()
}

// insufficientScope is a token without a scope the route requires: 403 with the challenge
// naming the scopes needed.
func (h *Handler) insufficientScope(s *session.Session, missing []string) *refusal {
	rf := refuse(errInsufficientScope, evAccessDenied, "missing scope "+strings.Join(missing, " ")).about(entryFor(s))
	rf.challenge = `Bearer error="insufficient_scope", scope="` + strings.Join(h.allow.RequiredScopes(), " ") + `"`
	return rf.asAPI()
}

// withChallenge sets the WWW-Authenticate answer of RFC 6750 §3. The description is one of
// this file's fixed reasons: nothing of the token is echoed.
func (e *refusal) withChallenge(code, description string) *refusal {
	e.challenge = `Bearer error="` + code + `", error_description="` + strings.ReplaceAll(description, `"`, `'`) + `"`
	return e
}

// asAPI answers the refusal in JSON whatever the request accepts.
func (e *refusal) asAPI() *refusal {
	e.api = true
	return e
}

// asObject is v when it is a JSON object, else nil.
func asObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
