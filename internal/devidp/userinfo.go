package devidp

import (
	"net/http"
	"strings"
)

// handleUserinfo answers the profile of the access token's user, with the impersonator of an
// impersonated login as the Mode shows it.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearerToken(r)
	now := s.now()
	var g grant
	if ok {
		s.mu.Lock()
		e, found := s.access[tok]
		ok = found && !now.After(e.expires)
		if ok {
			g = e.g
		}
		s.mu.Unlock()
	}
	u := s.user(g.UserID)
	if !ok || u == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token is unknown or expired"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "The access token is unknown or expired.")
		return
	}
	c := s.profileClaims(u, g.Scope)
	s.addImpersonation(c, s.user(g.ImpersonatorID), inUserinfo)
	if s.misbehaviour().has(UserinfoWrongSub) {
		c["sub"] = s.otherSub(u.ID)
	}
	writeJSON(w, http.StatusOK, c)
}

// bearerToken returns the token of an `Authorization: Bearer` header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}
