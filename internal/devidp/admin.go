package devidp

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// sessionAdmin returns the browser's SSO session and the person behind it — the impersonator
// of a Keycloak-style impersonated session, else its user — when there is one.
func (s *Server) sessionAdmin(r *http.Request) (session, *User) {
	sess, ok := s.currentSession(r)
	if !ok {
		return session{}, nil
	}
	if imp := s.user(sess.ImpersonatorID); imp != nil {
		return sess, imp
	}
	return sess, s.user(sess.UserID)
}

// handleAdmin is the Auth0 Dashboard's Users page: "Sign in as User" for each user, and the
// Keycloak-style impersonation of the provider session.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	sess, actor := s.sessionAdmin(r)
	if actor == nil || !actor.Admin {
		notice := ""
		if actor != nil {
			notice = actor.label() + " is not an administrator of this provider. Sign in as one."
		}
		s.loginPage(w, pending{admin: true}, notice)
		return
	}
	type row struct{ Key, Label string }
	var users []row
	for _, u := range s.users {
		if u != actor {
			users = append(users, row{u.Key, u.label()})
		}
	}
	var clients []string
	for _, c := range s.clients {
		clients = append(clients, c.ID)
	}
	impersonating := ""
	if sess.ImpersonatorID != "" {
		if u := s.user(sess.UserID); u != nil {
			impersonating = u.label()
		}
	}
	s.render(w, http.StatusOK, "admin", "Users", struct {
		Base, CSRF, Admin, Impersonating string
		Users                            []row
		Clients                          []string
	}{s.base, sess.CSRF, actor.label(), impersonating, users, clients})
}

// adminForm reads a POST of the admin page: it needs an administrator's SSO session and the
// session's CSRF token. On failure it has answered.
func (s *Server) adminForm(w http.ResponseWriter, r *http.Request) (session, *User, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return session{}, nil, false
	}
	sess, actor := s.sessionAdmin(r)
	if actor == nil || !actor.Admin {
		s.errorPage(w, http.StatusForbidden, "Administrators only", "Sign in on the admin page as an administrator first.")
		return session{}, nil, false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.CSRF)) != 1 {
		s.errorPage(w, http.StatusForbidden, "Form expired", "The form has expired. Reload the admin page and try again.")
		return session{}, nil, false
	}
	return sess, actor, true
}

// handleAdminImpersonate mints an impersonation link as the API does, the signed-in
// administrator being the impersonator.
func (s *Server) handleAdminImpersonate(w http.ResponseWriter, r *http.Request) {
	_, actor, ok := s.adminForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	target := s.user(f.Get("user"))
	if target == nil {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Choose one of the users on the admin page.")
		return
	}
	mode := ""
	if f.Get("response_mode") == "post" {
		mode = "form_post"
	}
	link, err := s.Impersonate(ImpersonateParams{
		UserID: target.ID, ImpersonatorID: actor.ID, ClientID: f.Get("client_id"), Protocol: "oauth2",
		ResponseType: strings.ToLower(f.Get("response_type")), ResponseMode: mode,
		State: f.Get("state"), Scope: f.Get("scope"),
	})
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Cannot sign in as this user", strings.TrimPrefix(err.Error(), "devidp: "))
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.render(w, http.StatusOK, "link", "Sign in as User", struct {
		Base, Link, Target, Client string
	}{s.base, link, target.label(), f.Get("client_id")})
}

// handleKCImpersonate turns the administrator's SSO session into one of the target,
// impersonated by the administrator, as Keycloak's "Impersonate" does: a new session (a new
// sid), whose application's next ordinary login carries the impersonator.
func (s *Server) handleKCImpersonate(w http.ResponseWriter, r *http.Request) {
	sess, actor, ok := s.adminForm(w, r)
	if !ok {
		return
	}
	target := s.user(r.PostForm.Get("user"))
	if target == nil || target == actor {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Choose another user on the admin page.")
		return
	}
	now := s.now()
	s.updateSession(r, func(ss *session) {
		ss.UserID, ss.ImpersonatorID, ss.SID, ss.AuthTime = target.ID, actor.ID, newID(), now
	})
	var apps []string
	for _, c := range s.clients {
		for _, cb := range c.RedirectURIs {
			if u, err := url.Parse(cb); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
				if app := u.Scheme + "://" + u.Host + "/"; !slices.Contains(apps, app) {
					apps = append(apps, app)
				}
			}
		}
	}
	s.render(w, http.StatusOK, "kcdone", "Now open the application", struct {
		Base, CSRF, Target, Admin string
		Apps                      []string
	}{s.base, sess.CSRF, target.label(), actor.label(), apps})
}

// handleKCStop gives the administrator their own SSO session back, under a new sid.
func (s *Server) handleKCStop(w http.ResponseWriter, r *http.Request) {
	_, actor, ok := s.adminForm(w, r)
	if !ok {
		return
	}
	now := s.now()
	s.updateSession(r, func(sess *session) {
		sess.UserID, sess.ImpersonatorID, sess.SID, sess.AuthTime = actor.ID, "", newID(), now
	})
	http.Redirect(w, r, s.base+"admin", http.StatusSeeOther)
}
