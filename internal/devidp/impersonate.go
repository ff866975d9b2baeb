package devidp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ImpersonateParams is the request of Auth0's impersonation API, flattened.
type ImpersonateParams struct {
	// UserID is the user to sign in as; ImpersonatorID the administrator doing it; ClientID
	// the application. User ids are subs, as in Auth0 (a Key works too).
	UserID, ImpersonatorID, ClientID string
	// Protocol must be "oauth2", the default; Auth0's samlp and wsfed are not simulated.
	Protocol string
	// ResponseType is "code" (default) or "token".
	ResponseType string
	// ResponseMode is "" or "query" (a GET redirect, the default for code), "fragment" (the
	// default for token) or "form_post" (the Dashboard's POST).
	ResponseMode string
	// State is put in the callback of a code response as given: fixed at minting, bound to
	// no browser.
	State string
	// Scope defaults to "openid".
	Scope string
	// CallbackURL must be one of the client's RedirectURIs; empty means the first one.
	CallbackURL string
}

// link is what an impersonation link's bewit carries.
type link struct {
	ID           string `json:"jti"`
	UserID       string `json:"sub"`
	Impersonator string `json:"imp"`
	ClientID     string `json:"cid"`
	ResponseType string `json:"rt"`
	ResponseMode string `json:"rm"`
	State        string `json:"st,omitempty"`
	Scope        string `json:"sc"`
	Callback     string `json:"cb"`
	Expires      int64  `json:"exp"`
}

// Impersonate is the in-process form of POST /users/{id}/impersonate: it checks p and returns
// the one-time link, good for 10 minutes, that signs the browser in as the user.
func (s *Server) Impersonate(p ImpersonateParams) (string, error) {
	u, imp, c := s.user(p.UserID), s.user(p.ImpersonatorID), s.client(p.ClientID)
	switch {
	case u == nil:
		return "", fmt.Errorf("devidp: unknown user %q", p.UserID)
	case imp == nil:
		return "", fmt.Errorf("devidp: unknown impersonator_id %q", p.ImpersonatorID)
	case c == nil:
		return "", fmt.Errorf("devidp: unknown client_id %q", p.ClientID)
	case p.Protocol != "" && p.Protocol != "oauth2":
		return "", fmt.Errorf("devidp: protocol %q is not supported (only oauth2)", p.Protocol)
	}
	l := link{ID: newID(), UserID: u.ID, Impersonator: imp.ID, ClientID: c.ID, ResponseType: p.ResponseType,
		ResponseMode: p.ResponseMode, State: p.State, Scope: p.Scope, Callback: p.CallbackURL,
		Expires: s.now().Add(linkTTL).Unix()}
	if l.ResponseType == "" {
		l.ResponseType = "code"
	}
	if l.ResponseType != "code" && l.ResponseType != "token" {
		return "", fmt.Errorf("devidp: response_type %q is not supported (code or token)", l.ResponseType)
	}
	switch l.ResponseMode {
	case "":
		l.ResponseMode = "query"
		if l.ResponseType == "token" {
			l.ResponseMode = "fragment"
		}
	case "query", "fragment", "form_post":
	default:
		return "", fmt.Errorf("devidp: response_mode %q is not supported", l.ResponseMode)
	}
	if l.ResponseMode == "query" && l.ResponseType == "token" {
		return "", errors.New("devidp: tokens cannot be returned in the query")
	}
	if l.Scope == "" {
		l.Scope = "openid"
	}
	if l.Callback == "" && len(c.RedirectURIs) > 0 {
		l.Callback = c.RedirectURIs[0]
	}
	if !slices.Contains(c.RedirectURIs, l.Callback) {
		return "", fmt.Errorf("devidp: callback_url %q is not an allowed callback URL of client %q", l.Callback, c.ID)
	}
	payload, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("devidp: encoding link: %w", err)
	}
	bewit := b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac(payload))
	return s.issuer() + "users/" + url.PathEscape(u.ID) + "/impersonate?&bewit=" + bewit, nil
}

func (s *Server) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write(payload)
	return m.Sum(nil)
}

// openLink checks a bewit's MAC and decodes it.
func (s *Server) openLink(bewit string) (link, bool) {
	p, m, ok := strings.Cut(bewit, ".")
	if !ok {
		return link{}, false
	}
	payload, err1 := b64.DecodeString(p)
	sum, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(sum, s.mac(payload)) {
		return link{}, false
	}
	var l link
	if json.Unmarshal(payload, &l) != nil {
		return link{}, false
	}
	return l, true
}

// handleImpersonateAPI is Auth0's POST /users/{id}/impersonate.
func (s *Server) handleImpersonateAPI(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AdminToken == "" {
		oauthError(w, http.StatusForbidden, "access_denied", "The impersonation API is disabled at this provider.")
		return
	}
	tok, ok := bearerToken(r)
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "unauthorized", "A valid admin Bearer token is required.")
		return
	}
	var body struct {
		Protocol       string `json:"protocol"`
		ImpersonatorID string `json:"impersonator_id"`
		ClientID       string `json:"client_id"`
		Additional     struct {
			ResponseType string `json:"response_type"`
			ResponseMode string `json:"response_mode"`
			State        string `json:"state"`
			Scope        string `json:"scope"`
			CallbackURL  string `json:"callback_url"`
		} `json:"additionalParameters"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The body is not the expected JSON object.")
		return
	}
	a := body.Additional
	l, err := s.Impersonate(ImpersonateParams{
		UserID: r.PathValue("id"), ImpersonatorID: body.ImpersonatorID, ClientID: body.ClientID,
		Protocol: body.Protocol, ResponseType: a.ResponseType, ResponseMode: a.ResponseMode,
		State: a.State, Scope: a.Scope, CallbackURL: a.CallbackURL,
	})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "devidp: "))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, l)
}

// handleFollowLink signs the browser in as the link's user and sends it to the callback, as
// an unsolicited authorization response: a code with the link's state, or tokens in the
// fragment without any state, or a form post of either.
func (s *Server) handleFollowLink(w http.ResponseWriter, r *http.Request) {
	l, ok := s.openLink(r.URL.Query().Get("bewit"))
	if !ok || l.UserID != r.PathValue("id") {
		oauthError(w, http.StatusUnauthorized, "access_denied", "Impersonation - Bad mac")
		return
	}
	now := s.now()
	s.mu.Lock()
	_, used := s.usedLinks[l.ID]
	expired := now.Unix() >= l.Expires
	if !used && !expired {
		s.sweepLocked(now)
		s.usedLinks[l.ID] = time.Unix(l.Expires, 0)
	}
	s.mu.Unlock()
	switch {
	case used:
		oauthError(w, http.StatusUnauthorized, "access_denied", "Impersonation - link already used")
		return
	case expired:
		oauthError(w, http.StatusUnauthorized, "access_denied", "Impersonation - link expired")
		return
	}
	g := grant{UserID: l.UserID, ImpersonatorID: l.Impersonator, Link: true, ClientID: l.ClientID,
		RedirectURI: l.Callback, Scope: l.Scope, SID: newID(), AuthTime: now}
	s.noteLogin(g)
	if l.ResponseType == "code" {
		s.deliver(w, r, l.Callback, l.ResponseMode, withState([]param{{"code", s.issueCode(g)}}, l.State))
		return
	}
	ts, err := s.issueTokens(g, issueOpts{idToken: hasScope(l.Scope, "openid"), atHash: hasScope(l.Scope, "openid")})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "The provider could not issue tokens.")
		return
	}
	ps := []param{{"access_token", ts.AccessToken}}
	if ts.IDToken != "" {
		ps = append(ps, param{"id_token", ts.IDToken})
	}
	ps = append(ps, param{"scope", ts.Scope}, param{"expires_in", strconv.FormatInt(ts.ExpiresIn, 10)},
		param{"token_type", ts.TokenType})
	s.deliver(w, r, l.Callback, l.ResponseMode, ps)
}
