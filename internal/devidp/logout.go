package devidp

import (
	"context"
	"net/http"
	"slices"
	"strings"
)

// handleOIDCLogout is the RP-initiated logout endpoint (end_session_endpoint): it ends the
// SSO session and returns to post_logout_redirect_uri (with state) when the client allows it.
// The client comes from client_id, else from the audience of id_token_hint. A browser
// without an SSO session (an auto-login) ends the session named by the hint's sid.
func (s *Server) handleOIDCLogout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Bad request", "The logout request could not be read.")
		return
	}
	clientID := r.Form.Get("client_id")
	var hint struct {
		Aud string `json:"aud"`
		SID string `json:"sid"`
	}
	if h := r.Form.Get("id_token_hint"); h == "" || s.verify(h, &hint) != nil {
		hint.Aud, hint.SID = "", ""
	}
	if clientID == "" {
		clientID = hint.Aud
	}
	target := r.Form.Get("post_logout_redirect_uri")
	if state := r.Form.Get("state"); state != "" && target != "" {
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		s.logout(w, r, clientID, target, target+sep+encodeParams([]param{{"state", state}}), hint.SID)
		return
	}
	s.logout(w, r, clientID, target, target, hint.SID)
}

// handleV2Logout is Auth0's /v2/logout?client_id=...&returnTo=....
func (s *Server) handleV2Logout(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.logout(w, r, q.Get("client_id"), q.Get("returnTo"), q.Get("returnTo"), "")
}

// logout ends the SSO session (else the session hintSID, when given) and delivers its
// back-channel logout tokens, then redirects to location when target is an allowed
// post-logout URL — of the client, or of any client when none is named (Auth0's tenant-wide
// list) — and otherwise shows the signed-out page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, clientID, target, location, hintSID string) {
	sid := s.endSession(w, r)
	if sid == "" {
		sid = hintSID
	}
	if sid != "" {
		s.endLogins(context.WithoutCancel(r.Context()), []string{sid})
	}
	allowed := false
	if target != "" {
		for _, c := range s.clients {
			if (clientID == "" || c.ID == clientID) && slices.Contains(c.PostLogoutRedirectURIs, target) {
				allowed = true
			}
		}
	}
	if allowed {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, location, http.StatusFound)
		return
	}
	s.render(w, http.StatusOK, "signedout", "You are signed out", struct {
		Refused bool
	}{target != ""})
}
