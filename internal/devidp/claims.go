package devidp

import (
	"slices"
	"strings"
	"time"
)

// Where a claim set goes: the impersonation claims differ between them.
type claimPlace int

const (
	inIDToken claimPlace = iota
	inAccessToken
	inUserinfo
)

// auth0Impersonator is Auth0's `impersonator` object.
type auth0Impersonator struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// keycloakImpersonator is the `impersonator` object of Keycloak's mappers.
type keycloakImpersonator struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// profileClaims are the user's claims for scope: sub, profile and email claims, and the
// groups and roles a Rule would add.
func (s *Server) profileClaims(u *User, scope string) map[string]any {
	c := map[string]any{"sub": u.ID}
	if hasScope(scope, "profile") {
		c["name"] = u.Name
		c["nickname"] = u.Nickname
		c["preferred_username"] = u.Nickname
		c["updated_at"] = s.updatedAt
	}
	if hasScope(scope, "email") {
		c["email"] = u.Email
		c["email_verified"] = u.EmailVerified
	}
	if len(u.Groups) > 0 {
		c["groups"] = u.Groups
	}
	if len(u.Roles) > 0 {
		c["roles"] = u.Roles
	}
	return c
}

// addImpersonation adds the claims that show imp acting as the user, as the Mode puts them
// at place. In Auth0 mode the ID token gets only namespaced claims, and only when a
// Namespace is configured; access tokens get nothing (Auth0 issues no JWT access token for
// impersonation).
func (s *Server) addImpersonation(c map[string]any, imp *User, place claimPlace) {
	if imp == nil {
		return
	}
	switch s.cfg.Mode {
	case ModeAuth0:
		who := auth0Impersonator{UserID: imp.ID, Email: imp.Email}
		switch {
		case place == inUserinfo:
			c["impersonated"] = true
			c["impersonator"] = who
		case place == inIDToken && s.cfg.Namespace != "":
			c[s.cfg.Namespace+"impersonated"] = true
			c[s.cfg.Namespace+"impersonator"] = who
		}
	case ModeKeycloak:
		c["impersonator"] = keycloakImpersonator{ID: imp.ID, Username: imp.username()}
	case ModeAct:
		c["act"] = Actor{Sub: imp.ID}
	}
}

// idTokenClaims are the claims of an ID token for g issued at now. nonce and atHash are
// left out when empty.
func (s *Server) idTokenClaims(g *grant, u, imp *User, now time.Time, nonce, atHash string) map[string]any {
	c := s.profileClaims(u, g.Scope)
	c["iss"] = s.issuer()
	c["aud"] = g.ClientID
	c["azp"] = g.ClientID
	c["iat"] = now.Unix()
	c["exp"] = now.Add(idTokenTTL).Unix()
	c["auth_time"] = g.AuthTime.Unix()
	c["sid"] = g.SID
	if nonce != "" {
		c["nonce"] = nonce
	}
	if atHash != "" {
		c["at_hash"] = atHash
	}
	s.addImpersonation(c, imp, inIDToken)
	return c
}

// accessTokenClaims are the claims of a JWT access token for g's audience, in the RFC 9068
// profile (Auth0's "RFC 9068" token dialect): iss, sub, aud, client_id, iat, exp, jti and
// scope, and Auth0's azp. aud is always an array: the audience, then, as Auth0 does, the
// userinfo endpoint when the scope has openid.
func (s *Server) accessTokenClaims(g *grant, imp *User, now time.Time) map[string]any {
	aud := []string{g.Audience}
	if hasScope(g.Scope, "openid") {
		aud = append(aud, s.issuer()+"userinfo")
	}
	c := map[string]any{
		"iss":       s.issuer(),
		"sub":       g.UserID,
		"aud":       aud,
		"azp":       g.ClientID,
		"client_id": g.ClientID,
		"scope":     g.Scope,
		"iat":       now.Unix(),
		"exp":       now.Add(s.cfg.AccessTokenTTL).Unix(),
		"jti":       newID(),
	}
	s.addImpersonation(c, imp, inAccessToken)
	return c
}

// jwtAccessToken says whether g gets a JWT access token: only for an audience, and never for
// an Auth0 impersonation ("Impersonation cannot be used to return JWT Access Tokens").
// Keycloak- and act-style impersonated SSO sessions do get one, carrying the impersonator.
func (s *Server) jwtAccessToken(g *grant) bool {
	if g.Audience == "" || g.Link {
		return false
	}
	return !(g.impersonated() && s.cfg.Mode == ModeAuth0)
}
