package devidp

import (
	"crypto/rand"
	"maps"
	"net/http"
	"time"
)

// grant is one completed authentication: who signed in, to which client, asking for what.
type grant struct {
	UserID         string
	ImpersonatorID string // non-empty when someone else is acting as the user
	Link           bool   // an Auth0 impersonation link: opaque userinfo-only token, no refresh
	ClientID       string
	RedirectURI    string
	Scope          string
	Nonce          string
	Audience       string
	SID            string
	AuthTime       time.Time
	Challenge      string // PKCE code_challenge, empty when none was made
	ChallengeAlg   string // S256 or plain
}

func (g *grant) impersonated() bool { return g.ImpersonatorID != "" }

// pending is an authorization waiting on the login page; admin ones return to /admin.
type pending struct {
	req     authRequest
	admin   bool
	expires time.Time
}

// session is a provider SSO session, named by the devidp_sso cookie.
type session struct {
	UserID         string
	ImpersonatorID string // Keycloak-style: the admin acting as UserID
	SID            string
	CSRF           string
	AuthTime       time.Time
	expires        time.Time
}

type codeEntry struct {
	g       grant
	expires time.Time
	used    bool
	issued  []string // tokens issued for it, revoked if it is presented again
}

type accessEntry struct {
	g       grant
	expires time.Time
}

type refreshEntry struct {
	g       grant
	expires time.Time
}

// newID returns 32 url-safe random characters.
func newID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return b64.EncodeToString(b)
}

// sweepLocked drops expired records, at most once a minute of provider time.
func (s *Server) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute && !now.Before(s.lastSweep) {
		return
	}
	s.lastSweep = now
	sweep(s.pending, now, func(v *pending) time.Time { return v.expires })
	sweep(s.sessions, now, func(v *session) time.Time { return v.expires })
	sweep(s.codes, now, func(v *codeEntry) time.Time { return v.expires })
	sweep(s.access, now, func(v *accessEntry) time.Time { return v.expires })
	sweep(s.refresh, now, func(v *refreshEntry) time.Time { return v.expires })
	sweep(s.usedLinks, now, func(exp time.Time) time.Time { return exp })
	sweep(s.usedJTIs, now, func(exp time.Time) time.Time { return exp })
	sweep(s.logins, now, func(v *loginRecord) time.Time { return v.expires })
}

// sweep deletes the records of m that expired before now.
func sweep[V any](m map[string]V, now time.Time, expires func(V) time.Time) {
	maps.DeleteFunc(m, func(_ string, v V) bool { return now.After(expires(v)) })
}

// addPending keeps an authorization for the login page and returns its tx id.
func (s *Server) addPending(p pending) string {
	now := s.now()
	tx := newID()
	p.expires = now.Add(pendingTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.pending[tx] = &p
	return tx
}

// takePending removes and returns the authorization tx, if it is still there.
func (s *Server) takePending(tx string) (pending, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[tx]
	if !ok {
		return pending{}, false
	}
	delete(s.pending, tx)
	if now.After(p.expires) {
		return pending{}, false
	}
	return *p, true
}

// startSession opens an SSO session for userID, replacing the browser's old one, and sets
// the cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, userID string) session {
	now := s.now()
	id := newID()
	sess := session{UserID: userID, SID: newID(), CSRF: newID(), AuthTime: now, expires: now.Add(sessionTTL)}
	s.mu.Lock()
	if c, err := r.Cookie(ssoCookie); err == nil {
		delete(s.sessions, c.Value)
	}
	s.sweepLocked(now)
	s.sessions[id] = &sess
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: id, Path: "/", HttpOnly: true,
		Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return sess
}

// currentSession returns a copy of the browser's SSO session, if it has a live one.
func (s *Server) currentSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(ssoCookie)
	if err != nil {
		return session{}, false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if !ok || now.After(sess.expires) {
		return session{}, false
	}
	return *sess, true
}

// updateSession changes the browser's SSO session in place; false when it has none.
func (s *Server) updateSession(r *http.Request, change func(*session)) bool {
	c, err := r.Cookie(ssoCookie)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if ok {
		change(sess)
	}
	return ok
}

// endSession forgets the browser's SSO session, clears its cookie and returns the session's
// sid ("" when the browser had none).
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) string {
	sid := ""
	if c, err := r.Cookie(ssoCookie); err == nil {
		s.mu.Lock()
		if sess, ok := s.sessions[c.Value]; ok {
			sid = sess.SID
			delete(s.sessions, c.Value)
		}
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return sid
}
