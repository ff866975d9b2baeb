package devidp

import (
	"fmt"
)

// tokenSet is what the provider hands out for a grant, in the token endpoint's JSON shape.
type tokenSet struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// issueOpts says which tokens to issue beyond the access token.
type issueOpts struct {
	idToken bool   // an ID token
	nonce   string // its nonce, when the authorization had one
	atHash  bool   // its at_hash (implicit id_token token)
	refresh bool   // a refresh token, when the scope has offline_access and no one impersonates
	renewal bool   // a refresh_token grant's reissue, which some misbehaviours spoil
}

// issueTokens mints and remembers the tokens of g.
func (s *Server) issueTokens(g grant, o issueOpts) (tokenSet, error) {
	u := s.user(g.UserID)
	if u == nil {
		return tokenSet{}, fmt.Errorf("unknown user %q", g.UserID)
	}
	imp := s.user(g.ImpersonatorID)
	now := s.now()
	ts := tokenSet{Scope: g.Scope, ExpiresIn: int64(s.cfg.AccessTokenTTL.Seconds()), TokenType: "Bearer"}
	if s.jwtAccessToken(&g) {
		tok, err := s.signWith(signing{typ: accessTokenTyp}, s.accessTokenClaims(&g, imp, now))
		if err != nil {
			return tokenSet{}, err
		}
		ts.AccessToken = tok
	} else {
		ts.AccessToken = newID()
	}
	if o.idToken {
		atHash := ""
		if o.atHash {
			atHash = halfHash(ts.AccessToken)
		}
		c := s.idTokenClaims(&g, u, imp, now, o.nonce, atHash)
		tok, err := s.signWith(s.spoilIDToken(c, now, o.renewal), c)
		if err != nil {
			return tokenSet{}, err
		}
		ts.IDToken = tok
	}
	if o.refresh && hasScope(g.Scope, "offline_access") && !g.impersonated() {
		ts.RefreshToken = newID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.access[ts.AccessToken] = &accessEntry{g: g, expires: now.Add(s.cfg.AccessTokenTTL)}
	if ts.RefreshToken != "" {
		s.refresh[ts.RefreshToken] = &refreshEntry{g: g, expires: now.Add(refreshTTL)}
	}
	return ts, nil
}

// issueCode mints and remembers an authorization code for g.
func (s *Server) issueCode(g grant) string {
	now := s.now()
	code := newID()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.codes[code] = &codeEntry{g: g, expires: now.Add(codeTTL)}
	return code
}
