package devidp

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// authRequest is an authorization request as /authorize received it.
type authRequest struct {
	ClientID, RedirectURI       string
	ResponseType, ResponseMode  string // ResponseMode is the effective one, defaults applied
	Scope, State, Nonce         string
	CodeChallenge, ChallengeAlg string
	Audience, Prompt, LoginHint string
}

// returnsTokens says whether the response type puts tokens in the authorization response.
func returnsTokens(responseType string) bool {
	return responseType == "token" || responseType == "id_token token"
}

// normalizeResponseType sorts a space-separated response type: "token id_token" is "id_token token".
func normalizeResponseType(rt string) string {
	f := strings.Fields(rt)
	slices.Sort(f)
	return strings.Join(f, " ")
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c := s.client(q.Get("client_id"))
	if c == nil {
		s.errorPage(w, http.StatusBadRequest, "Unknown application",
			"The client_id of this sign-in request is not registered at this provider.")
		return
	}
	req := authRequest{
		ClientID:      c.ID,
		RedirectURI:   q.Get("redirect_uri"),
		ResponseType:  normalizeResponseType(q.Get("response_type")),
		Scope:         q.Get("scope"),
		State:         q.Get("state"),
		Nonce:         q.Get("nonce"),
		CodeChallenge: q.Get("code_challenge"),
		ChallengeAlg:  q.Get("code_challenge_method"),
		Audience:      q.Get("audience"),
		Prompt:        q.Get("prompt"),
		LoginHint:     q.Get("login_hint"),
	}
	if !slices.Contains(c.RedirectURIs, req.RedirectURI) {
		s.errorPage(w, http.StatusBadRequest, "Callback URL mismatch",
			"The redirect_uri of this sign-in request is not an allowed callback URL of the application.")
		return
	}
	if e := checkAuthRequest(&req, q.Get("response_mode")); e != nil {
		s.deliver(w, r, req.RedirectURI, req.ResponseMode, e.params(req.State))
		return
	}
	prompts := strings.Fields(req.Prompt)
	if !slices.Contains(prompts, "login") {
		if sess, ok := s.currentSession(r); ok {
			s.complete(w, r, req, sess)
			return
		}
	}
	if userID, impID, set := s.autoLogin(); set {
		if userID == "" {
			s.errorPage(w, http.StatusInternalServerError, "Auto-login misconfigured",
				"SetAutoLogin names a user this provider does not have.")
			return
		}
		s.complete(w, r, req, session{UserID: userID, ImpersonatorID: impID, SID: newID(), AuthTime: s.now()})
		return
	}
	if slices.Contains(prompts, "none") {
		e := &authError{"login_required", "The user is not signed in at the provider."}
		s.deliver(w, r, req.RedirectURI, req.ResponseMode, e.params(req.State))
		return
	}
	s.loginPage(w, pending{req: req}, "")
}

// checkAuthRequest checks the request's parameters once its client and redirect_uri are
// known good, and sets its effective response mode (even on error, to send the error back).
func checkAuthRequest(req *authRequest, mode string) *authError {
	req.ResponseMode = "query"
	if returnsTokens(req.ResponseType) {
		req.ResponseMode = "fragment"
	}
	switch mode {
	case "":
	case "query", "fragment", "form_post":
		if !(mode == "query" && returnsTokens(req.ResponseType)) {
			req.ResponseMode = mode
		}
	default:
		return &authError{"invalid_request", "Unsupported response_mode: " + mode}
	}
	switch {
	case req.ResponseType == "":
		return &authError{"invalid_request", "Missing required parameter: response_type"}
	case req.ResponseType != "code" && !returnsTokens(req.ResponseType):
		return &authError{"unsupported_response_type", "Unsupported response_type: " + req.ResponseType}
	case mode == "query" && returnsTokens(req.ResponseType):
		return &authError{"invalid_request", "response_mode query is not allowed when tokens are returned"}
	}
	if req.ResponseType == "id_token token" {
		if !hasScope(req.Scope, "openid") {
			return &authError{"invalid_request", "The openid scope is required for response_type id_token"}
		}
		if req.Nonce == "" {
			return &authError{"invalid_request", "Missing required parameter: nonce"}
		}
	}
	if req.CodeChallenge != "" {
		if req.ChallengeAlg == "" {
			req.ChallengeAlg = "plain"
		}
		if req.ChallengeAlg != "S256" && req.ChallengeAlg != "plain" {
			return &authError{"invalid_request", "Unsupported code_challenge_method: " + req.ChallengeAlg}
		}
		if n := len(req.CodeChallenge); n < 43 || n > 128 {
			return &authError{"invalid_request", "code_challenge must be 43 to 128 characters"}
		}
	} else if req.ChallengeAlg != "" {
		return &authError{"invalid_request", "code_challenge_method given without code_challenge"}
	}
	prompts := strings.Fields(req.Prompt)
	if slices.Contains(prompts, "none") && len(prompts) > 1 {
		return &authError{"invalid_request", "prompt=none cannot be combined with other prompts"}
	}
	return nil
}

// autoLogin returns the user (and impersonator) set with SetAutoLogin; set is false when it
// is off, and userID is empty when it names an unknown user.
func (s *Server) autoLogin() (userID, impersonatorID string, set bool) {
	s.mu.Lock()
	userKey, impKey := s.autoUser, s.autoImp
	s.mu.Unlock()
	if userKey == "" {
		return "", "", false
	}
	u, imp := s.user(userKey), s.user(impKey)
	switch {
	case u == nil || (impKey != "" && imp == nil):
		return "", "", true
	case imp != nil:
		return u.ID, imp.ID, true
	}
	return u.ID, "", true
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Bad request", "The sign-in form could not be read.")
		return
	}
	u := s.user(r.PostForm.Get("user"))
	if u == nil {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Choose one of the users on the sign-in page.")
		return
	}
	p, ok := s.takePending(r.PostForm.Get("tx"))
	if !ok {
		s.errorPage(w, http.StatusBadRequest, "Sign-in expired",
			"This sign-in has expired or was already used. Go back to the application and start again.")
		return
	}
	sess := s.startSession(w, r, u.ID)
	if p.admin {
		http.Redirect(w, r, s.base+"admin", http.StatusSeeOther)
		return
	}
	s.complete(w, r, p.req, sess)
}

// complete answers req as the session's user: a code, or tokens, in the response mode.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, req authRequest, sess session) {
	g := grant{
		UserID: sess.UserID, ImpersonatorID: sess.ImpersonatorID,
		ClientID: req.ClientID, RedirectURI: req.RedirectURI,
		Scope: req.Scope, Nonce: req.Nonce, Audience: req.Audience,
		SID: sess.SID, AuthTime: sess.AuthTime,
		Challenge: req.CodeChallenge, ChallengeAlg: req.ChallengeAlg,
	}
	s.noteLogin(g)
	if req.ResponseType == "code" {
		ps := withState([]param{{"code", s.issueCode(g)}}, req.State)
		s.deliver(w, r, req.RedirectURI, req.ResponseMode, ps)
		return
	}
	withID := req.ResponseType == "id_token token"
	ts, err := s.issueTokens(g, issueOpts{idToken: withID, nonce: req.Nonce, atHash: withID})
	if err != nil {
		e := &authError{"server_error", "The provider could not issue tokens."}
		s.deliver(w, r, req.RedirectURI, req.ResponseMode, e.params(req.State))
		return
	}
	ps := []param{{"access_token", ts.AccessToken}, {"scope", ts.Scope},
		{"expires_in", strconv.FormatInt(ts.ExpiresIn, 10)}, {"token_type", ts.TokenType}}
	ps = withState(ps, req.State)
	if withID {
		ps = append(ps, param{"id_token", ts.IDToken})
	}
	s.deliver(w, r, req.RedirectURI, req.ResponseMode, ps)
}

// loginPage shows the users to sign in as, for the pending authorization p.
func (s *Server) loginPage(w http.ResponseWriter, p pending, notice string) {
	type choice struct {
		Key, Label string
		Autofocus  bool
	}
	var users []choice
	for _, u := range s.users {
		hint := p.req.LoginHint != "" && (p.req.LoginHint == u.Email || p.req.LoginHint == u.Key || p.req.LoginHint == u.ID)
		users = append(users, choice{u.Key, u.label(), hint})
	}
	s.render(w, http.StatusOK, "login", "Sign in", struct {
		Action, Tx, ClientID, Notice string
		Admin                        bool
		Users                        []choice
	}{s.base + "login", s.addPending(p), p.req.ClientID, notice, p.admin, users})
}
