package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The request body could not be read.")
		return
	}
	c, usedBasic, why := s.authenticateClient(r)
	if c == nil {
		if usedBasic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed"+why+".")
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		s.exchangeCode(w, r, c)
	case "refresh_token":
		s.refreshTokens(w, r, c)
	case "client_credentials":
		s.clientCredentials(w, r, c)
	case grantTokenExchange:
		s.tokenExchange(w, r, c)
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type: "+gt)
	}
}

// exchangeCode answers the authorization_code grant. A code is good once, for its client,
// redirect_uri and PKCE verifier; presenting it again revokes what it gave.
func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request, c *Client) {
	code := r.PostForm.Get("code")
	now := s.now()
	s.mu.Lock()
	e, ok := s.codes[code]
	switch {
	case !ok || e.g.ClientID != c.ID:
		s.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code.")
		return
	case e.used:
		for _, t := range e.issued {
			delete(s.access, t)
			delete(s.refresh, t)
		}
		e.issued = nil
		s.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code: it was already used.")
		return
	case now.After(e.expires):
		delete(s.codes, code)
		s.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code: it has expired.")
		return
	}
	e.used = true
	g := e.g
	s.mu.Unlock()

	if r.PostForm.Get("redirect_uri") != g.RedirectURI {
		oauthError(w, http.StatusBadRequest, "invalid_grant",
			"The redirect_uri does not match the one of the authorization request.")
		return
	}
	if !pkceOK(g.Challenge, g.ChallengeAlg, r.PostForm.Get("code_verifier")) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Failed to verify code_verifier.")
		return
	}
	ts, err := s.issueTokens(g, issueOpts{idToken: hasScope(g.Scope, "openid"), nonce: g.Nonce, refresh: true})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "The provider could not issue tokens.")
		return
	}
	s.mu.Lock()
	e.issued = append(e.issued, ts.AccessToken)
	if ts.RefreshToken != "" {
		e.issued = append(e.issued, ts.RefreshToken)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, ts)
}

// pkceOK checks a code_verifier against the authorization's challenge (RFC 7636); with no
// challenge there is nothing to check.
func pkceOK(challenge, alg, verifier string) bool {
	if challenge == "" {
		return true
	}
	if n := len(verifier); n < 43 || n > 128 {
		return false
	}
	want := verifier
	if alg == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = b64.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// refreshTokens answers the refresh_token grant: a new access token and ID token (when the
// scope has openid), and the same refresh token. The new ID token has no nonce.
func (s *Server) refreshTokens(w http.ResponseWriter, r *http.Request, c *Client) {
	rt := r.PostForm.Get("refresh_token")
	now := s.now()
	s.mu.Lock()
	e, ok := s.refresh[rt]
	valid := ok && e.g.ClientID == c.ID && !now.After(e.expires)
	var g grant
	if valid {
		g = e.g
	}
	s.mu.Unlock()
	if !valid {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "Unknown or invalid refresh token.")
		return
	}
	ts, err := s.issueTokens(g, issueOpts{idToken: hasScope(g.Scope, "openid"), renewal: true})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "The provider could not issue tokens.")
		return
	}
	ts.RefreshToken = rt
	writeJSON(w, http.StatusOK, ts)
}
