package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// newSession builds the session for a verified identity. It keeps only what later requests
// need: the access token only when it may be forwarded, the refresh token only with refresh on.
func (h *Handler) newSession(id *claims.Identity, tok *oauth2.Token, rawIDToken, audience string, now time.Time) *session.Session {
	s := &session.Session{
		ID:            randomToken(16),
		TokenAudience: audience,
		TokenExpiry:   tok.Expiry,
		Provider:      h.provKey,
		Created:       now,
		LastSeen:      now,
		Expires:       now.Add(time.Duration(h.SessionLifetime)),
	}
	h.fillIdentity(s, id)
	if h.Refresh && id.Imp == nil {
		s.RefreshToken = tok.RefreshToken
	}
	if audience != "" && h.headers.accessToken != "" {
		s.AccessToken = tok.AccessToken
		// A forwarded token that cannot be renewed (refresh off, or no refresh token: the
		// provider sends one only for offline_access) ends the session when it expires.
		if s.RefreshToken == "" && !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	if h.headers.idToken != "" {
		s.IDToken = rawIDToken
	}
	if id.Imp != nil {
		// lifetime caps an impersonation: the earliest of session_lifetime, lifetime and the
		// token's expiry.
		if capped := now.Add(h.imp.lifetime); capped.Before(s.Expires) {
			s.Expires = capped
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	return s
}

// fillIdentity writes into s who the identity is: what headers, placeholders and rules read.
func (h *Handler) fillIdentity(s *session.Session, id *claims.Identity) {
	s.Subject, s.Name, s.PreferredUsername, s.Groups = id.Subject, id.Name, id.Username, id.Groups
	s.EmailVerified = id.EmailVerified
	if id.EmailVerified {
		// An unverified address is anyone's to type: it is never passed on as identity.
		s.Email = id.Email
	}
	s.RuleClaims = h.ruleClaims(id.Claims)
	s.Scopes = strings.Join(id.Scopes, " ")
	s.SID = id.Claims.Str("sid")
	for _, name := range h.keep {
		if v, ok := id.Claims.Lookup(name); ok {
			s.Claims = append(s.Claims, session.Claim{Name: name, Value: claims.Render(v)})
		}
	}
	if id.Imp != nil {
		s.Impersonated = true
		s.ImpersonatorID, s.ImpersonatorEmail, s.ImpersonatorEmailVerified = id.Imp.ID, id.Imp.Email, id.Imp.EmailVerified
	}
}

// issueSession sets the session cookie, audits the login and sends the browser on. An
// impersonation the new session replaces is recorded as ended.
func (h *Handler) issueSession(w http.ResponseWriter, r *http.Request, s *session.Session, returnTo string) error {
	cur, _, ended := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	h.recordEnded(r, ended)
	if s.Impersonated {
		h.stashOwnSession(w, r, cur, s)
	}
	// The registry must know a session before the browser has it, or it could not be revoked.
	if err := h.store.Register(r.Context(), recordOf(s)); err != nil {
		return loginFailed(errStoreUnavailable, "store unavailable: "+err.Error()).about(entryFor(s)).causedBy(err)
	}
	if err := h.writeSession(w, r, s); errors.Is(err, errTooLarge) {
		return loginFailed(errSessionTooLarge, "session too large for cookies").about(entryFor(s))
	} else if err != nil {
		return loginFailed(errStoreUnavailable, "store unavailable: "+err.Error()).about(entryFor(s)).causedBy(err)
	}
	if cur != nil && cur.Impersonated {
		h.event(evImpersonationEnded, r, entryFor(cur).because("replaced by a new sign-in"))
	}
	if s.Impersonated {
		h.event(evImpersonationStarted, r, entryFor(s))
	} else {
		h.event(evLogin, r, entryFor(s))
	}
	h.sendOn(w, r, returnTo)
	return nil
}

// writeSession seals s into the session cookie(s), valid until s.Expires, or, with
// server-side sessions, into the store with its ticket as the cookie. errTooLarge, with
// nothing written, when the session is too large for the cookies a browser keeps.
func (h *Handler) writeSession(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	if h.ServerSideSessions {
		return h.writeServerSide(w, r, s)
	}
	sealed, until := h.sealSession(session.PurposeSession, s)
	if len(sealed) > cookieBudget(r) || !h.jar.SetChunked(w, r, h.jar.Base, sealed, until) {
		return errTooLarge
	}
	return nil
}

// cookieBudget is the most a sealed session may take: what lets the session and a stashed one
// travel together, with room for the application's cookies and other headers, within the
// request header size the server accepts (max_header_size; Caddy's default is 16 KB). A larger
// session would be written, and then every request of that browser refused (431) before any
// handler could clear it.
func cookieBudget(r *http.Request) int {
	limit := 16 << 10
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil && srv.MaxHeaderBytes > 0 {
		limit = srv.MaxHeaderBytes
	}
	return min(max((limit-4096)/2, session.ChunkSize), session.MaxChunks*session.ChunkSize)
}

// sendOn redirects to a same-origin path. With SameSite=Strict the session cookie is not sent
// on a redirect that ends a cross-site navigation, so the browser is sent on by a page instead.
func (h *Handler) sendOn(w http.ResponseWriter, r *http.Request, path string) {
	path = safeReturnTo(path, "/")
	w.Header().Set("Cache-Control", "no-store")
	if h.jar.SameSite == http.SameSiteStrictMode {
		h.continueTo(w, path, "Signed in", "You are signed in.")
		return
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// requestVars is what policy expressions see of the request.
func requestVars(r *http.Request) map[string]any {
	return map[string]any{"host": r.Host, "method": r.Method, "path": r.URL.Path, "remote_ip": clientIP(r)}
}

func (h *Handler) groupsClaim() string {
	if h.Allow != nil && h.Allow.GroupsClaim != "" {
		return h.Allow.GroupsClaim
	}
	return "groups"
}

// recordOf is what the session registry keeps of a session.
func recordOf(s *session.Session) store.SessionRecord {
	return store.SessionRecord{ID: s.ID, Subject: s.Subject, SID: s.SID, Impersonated: s.Impersonated,
		Impersonator: s.ImpersonatorID, Created: s.Created, Expires: s.Expires}
}
