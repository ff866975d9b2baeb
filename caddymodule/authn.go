package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// sessionGrace keeps a session's cookie readable this long after the session ends, so that
// its end is seen and recorded with who it was (an impersonation that expired) rather than
// the cookie silently vanishing.
const sessionGrace = 10 * time.Minute

// openSession reads the session cookie; nil when there is none or it is not a valid session.
func (h *Handler) openSession(r *http.Request) *session.Session {
	s, _, _ := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	return s
}

// readSealedSession opens a session stored under name. rejected carries the reason when a
// cookie was present but is not a valid session (tampered, expired, idle, malformed); ended
// is the session that opened but has expired or gone idle, so its end can be recorded.
func (h *Handler) readSealedSession(r *http.Request, name string, purpose session.Purpose) (s *session.Session, rejected string, ended *session.Session) {
	v, ok := session.ReadChunked(r, name)
	if !ok {
		return nil, "", nil
	}
	now := h.now()
	if h.ServerSideSessions && name == h.jar.Base {
		var why string
		if v, why = h.fromTicket(r.Context(), v, now); why != "" {
			return nil, why, nil
		}
	}
	s = new(session.Session)
	malformed := false
	err := h.sealer.OpenFunc(purpose, v, now, func(plain []byte) error {
		malformed = s.Unmarshal(plain) != nil
		return nil
	})
	switch {
	case errors.Is(err, session.ErrExpired):
		// The sealed value outlives its session by sessionGrace, and a browser whose clock is
		// behind still sends it after that: it is authentic, so its end is recorded with whose
		// it was.
		var gone session.Session
		if plain, err := h.sealer.OpenExpired(purpose, v); err == nil && gone.Unmarshal(plain) == nil {
			return nil, "expired", &gone
		}
		return nil, "expired", nil
	case err != nil:
		return nil, "does not open", nil
	case malformed:
		return nil, "malformed", nil
	}
	if !now.Before(s.Expires) {
		if why := h.deadToken(s, now); why != "" {
			return nil, why, s
		}
		return nil, "expired", s
	}
	if idle := time.Duration(h.SessionIdle); idle > 0 && now.Sub(s.LastSeen) > idle {
		return nil, "idle", s
	}
	return s, "", nil
}

// recordEnded audits the end of an impersonation whose session expired or went idle, whatever
// request finds it (a protected page, a new sign-in, a sign-out).
func (h *Handler) recordEnded(r *http.Request, ended *session.Session) {
	if ended != nil && ended.Impersonated {
		reason := "impersonated session expired"
		if h.now().Before(ended.Expires) {
			reason = "impersonated session idle"
		}
		h.event(evImpersonationEnded, r, entryFor(ended).because(reason))
	}
}

// sealSession seals s for purpose; the sealed value and its cookie outlive s.Expires by
// sessionGrace.
func (h *Handler) sealSession(purpose session.Purpose, s *session.Session) (string, time.Time) {
	until := s.Expires.Add(sessionGrace)
	return h.sealer.Seal(purpose, s.Marshal(), until), until
}

// currentSession returns the request's valid session, renewing it as needed (idle clock,
// tokens). A cookie that is present but invalid is cleared and audited as session_rejected.
func (h *Handler) currentSession(w http.ResponseWriter, r *http.Request) *session.Session {
	s, rejected, ended := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	if rejected != "" {
		h.jar.ClearChunked(w, r, h.jar.Base)
		who := auditEntry{}
		if ended != nil {
			who = entryFor(ended)
			h.recordEnded(r, ended)
		}
		h.event(evSessionRejected, r, who.because(rejected))
		return nil
	}
	if s == nil {
		return nil
	}
	if s.Provider != h.provKey {
		// Another provider's or client's session (a site with several): not this handler's
		// to accept, and not its to clear.
		h.event(evSessionRejected, r, entryFor(s).because("issued for another provider or client"))
		return nil
	}
	if h.store.Revoked(s.ID) {
		h.jar.ClearAll(w, h.jar.Base)
		if s.Impersonated {
			h.event(evImpersonationEnded, r, entryFor(s).because("revoked"))
		}
		h.event(evSessionRejected, r, entryFor(s).because("revoked"))
		return nil
	}
	now := h.now()
	end := func(reason string) *session.Session {
		h.jar.ClearAll(w, h.jar.Base)
		h.event(evSessionRejected, r, entryFor(s).because(reason))
		return nil
	}
	dirty := false
	if h.needsRefresh(s, now) {
		switch err := h.refresh(r, s); {
		case err == nil:
			dirty = true
		case errors.Is(err, errRefreshBusy):
			// Another request is renewing this session's tokens. This one goes on with what it
			// has and writes nothing: its old cookie must not overwrite the renewed one.
			if !now.Before(s.TokenExpiry) {
				s.AccessToken = "" // never forward a dead credential
			}
			return s
		case errors.Is(err, errRefreshRefused):
			return end("refresh refused by the provider")
		case errors.Is(err, errNoLongerAdmitted):
			return end("no longer admitted")
		case !now.Before(s.TokenExpiry) && h.headers.accessToken != "":
			// The token it would forward has expired and could not be renewed: end the session
			// rather than send a dead credential.
			return end("token expired and could not be renewed")
		}
	}
	if why := h.deadToken(s, now); why != "" {
		// A session issued without a cap at the token's expiry (before it was capped, or
		// under another configuration) ends here all the same.
		return end(why)
	}
	if idle := time.Duration(h.SessionIdle); idle > 0 && now.Sub(s.LastSeen) > idle/8 {
		s.LastSeen = now
		dirty = true
	}
	if dirty {
		// The response now carries a session cookie: no shared cache may keep it.
		w.Header().Set("Cache-Control", "private")
		if err := h.writeSession(w, r, s); err != nil {
			return end(err.Error())
		}
	}
	return s
}

// deadToken says why s must end when the access token it forwards has expired and cannot be
// renewed (no refresh token, or refresh off); "" when it need not. Such a session ends at the
// token's expiry rather than forward a dead credential until session_lifetime.
func (h *Handler) deadToken(s *session.Session, now time.Time) string {
	if s.AccessToken == "" || s.TokenExpiry.IsZero() || now.Before(s.TokenExpiry) {
		return ""
	}
	switch {
	case !h.Refresh:
		return "access token expired"
	case s.RefreshToken == "":
		return "access token expired and no refresh token (request offline_access)"
	}
	return "" // renewed, or ended, by the refresh above
}

func (h *Handler) needsRefresh(s *session.Session, now time.Time) bool {
	return h.Refresh && !s.Impersonated && s.RefreshToken != "" && !s.TokenExpiry.IsZero() &&
		now.Add(refreshMargin).After(s.TokenExpiry)
}
