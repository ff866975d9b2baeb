// OAuth 2.0 Token Exchange (RFC 8693), kept small: a confidential client trades a subject
// token, and optionally an actor token, for a JWT access token whose sub is the subject and
// whose act names the actor.

package devidp

import (
	"net/http"
	"slices"
	"time"
)

// RFC 8693 identifiers.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeID        = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

// presented is what the provider knows of a token presented to it.
type presented struct {
	sub   string
	scope string
	act   *Actor
}

// tokenExchange answers the token-exchange grant. subject_token (and actor_token, when
// given) must be a live access token this provider issued, or a JWT it signed with its
// issuer and an exp still ahead (an ID token, an access token, a minted one); the types must
// be access_token, id_token or jwt; audience is required. The answer is a JWT access token
// (typ at+jwt): sub the subject's, aud the audience, azp and client_id the client, scope as
// requested or else the subject token's, and act {sub: the actor's sub, act: the subject
// token's act} — or the subject token's act unchanged when there is no actor token. An
// impersonated login's access token counts as having act {sub: the impersonator}, in every
// Mode. The answer is not good at /userinfo.
func (s *Server) tokenExchange(w http.ResponseWriter, r *http.Request, c *Client) {
	f := r.PostForm
	if c.Secret == "" && len(c.PublicKeys) == 0 {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "A public client cannot exchange tokens.")
		return
	}
	aud := f.Get("audience")
	if aud == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: audience")
		return
	}
	subject, ok := s.presentedToken(f.Get("subject_token"), f.Get("subject_token_type"))
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The subject_token is invalid, expired or of an unsupported type.")
		return
	}
	act := subject.act
	if f.Has("actor_token") || f.Has("actor_token_type") {
		actor, ok := s.presentedToken(f.Get("actor_token"), f.Get("actor_token_type"))
		if !ok {
			oauthError(w, http.StatusBadRequest, "invalid_request", "The actor_token is invalid, expired or of an unsupported type.")
			return
		}
		act = &Actor{Sub: actor.sub, Act: subject.act}
	}
	scope := f.Get("scope")
	if scope == "" {
		scope = subject.scope
	}
	now := s.now()
	claims := map[string]any{
		"iss": s.issuer(), "sub": subject.sub, "aud": aud, "azp": c.ID, "client_id": c.ID,
		"iat": now.Unix(), "exp": now.Add(s.cfg.AccessTokenTTL).Unix(), "jti": newID(),
	}
	if scope != "" {
		claims["scope"] = scope
	}
	if act != nil {
		claims["act"] = act
	}
	tok, err := s.signWith(signing{typ: accessTokenTyp}, claims)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "The provider could not issue tokens.")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		TokenType       string `json:"token_type"`
		ExpiresIn       int64  `json:"expires_in"`
		Scope           string `json:"scope,omitempty"`
	}{tok, tokenTypeAccess, "Bearer", int64(s.cfg.AccessTokenTTL.Seconds()), scope})
}

// presentedToken checks a subject or actor token of type typ and says whose it is.
func (s *Server) presentedToken(tok, typ string) (presented, bool) {
	if tok == "" || !slices.Contains([]string{tokenTypeAccess, tokenTypeID, tokenTypeJWT}, typ) {
		return presented{}, false
	}
	now := s.now()
	s.mu.Lock()
	e, issued := s.access[tok]
	s.mu.Unlock()
	if issued {
		if now.After(e.expires) {
			return presented{}, false
		}
		p := presented{sub: e.g.UserID, scope: e.g.Scope}
		if e.g.impersonated() { // whatever the Mode shows, an exchange must not launder it
			p.act = &Actor{Sub: e.g.ImpersonatorID}
		}
		return p, true
	}
	var c struct {
		Iss, Sub, Scope string
		Exp             *float64
		Act             *Actor
	}
	if s.verify(tok, &c) != nil || c.Iss != s.issuer() || c.Sub == "" || c.Exp == nil ||
		!now.Before(time.Unix(int64(*c.Exp), 0)) {
		return presented{}, false
	}
	return presented{sub: c.Sub, scope: c.Scope, act: c.Act}, true
}
