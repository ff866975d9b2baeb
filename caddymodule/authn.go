package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

const (
	// refreshMargin: tokens are renewed this long before they expire.
	refreshMargin = time.Minute
	// refreshLockTTL bounds how long one refresh may hold a session's lock.
	refreshLockTTL = 30 * time.Second
)

// openSession reads the session cookie; nil when there is none or it does not open.
func (h *Handler) openSession(r *http.Request) *session.Session {
	s, _ := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	return s
}

// readSealedSession opens a session stored under name. rejected carries the reason when a
// cookie was present but is not a valid session (tampered, expired, malformed).
func (h *Handler) readSealedSession(r *http.Request, name string, purpose session.Purpose) (s *session.Session, rejected string) {
	v, ok := session.ReadChunked(r, name)
	if !ok {
		return nil, ""
	}
	now := h.now()
	plain, err := h.sealer.Open(purpose, v, now)
	if err != nil {
		if errors.Is(err, session.ErrExpired) {
			return nil, "expired"
		}
		return nil, "does not open"
	}
	s = new(session.Session)
	if err := s.Unmarshal(plain); err != nil {
		return nil, "malformed"
	}
	if !now.Before(s.Expires) {
		return nil, "expired"
	}
	if idle := time.Duration(h.SessionIdle); idle > 0 && purpose == session.PurposeSession && now.Sub(s.LastSeen) > idle {
		return nil, "idle"
	}
	return s, ""
}

// currentSession returns the request's valid session, renewing it as needed (idle clock,
// tokens). A cookie that is present but invalid is cleared and audited as session_rejected.
func (h *Handler) currentSession(w http.ResponseWriter, r *http.Request) *session.Session {
	s, rejected := h.readSealedSession(r, h.jar.Base, session.PurposeSession)
	if rejected != "" {
		h.jar.ClearChunked(w, r, h.jar.Base)
		h.event(evSessionRejected, r, auditEntry{Reason: rejected})
		return nil
	}
	if s == nil {
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
	if idle := time.Duration(h.SessionIdle); idle > 0 && now.Sub(s.LastSeen) > idle/8 {
		s.LastSeen = now
		dirty = true
	}
	if dirty {
		// The response now carries a session cookie: no shared cache may keep it.
		w.Header().Set("Cache-Control", "private")
		if !h.writeSession(w, r, s) {
			return end("session too large for cookies")
		}
	}
	return s
}

// writeSession seals s into the session cookie(s), valid until s.Expires. It reports false,
// writing nothing, when the session is too large for the cookies a browser keeps.
func (h *Handler) writeSession(w http.ResponseWriter, r *http.Request, s *session.Session) bool {
	return h.jar.SetChunked(w, r, h.jar.Base, h.sealer.Seal(session.PurposeSession, s.Marshal(), s.Expires), s.Expires)
}

func (h *Handler) needsRefresh(s *session.Session, now time.Time) bool {
	return h.Refresh && !s.Impersonated && s.RefreshToken != "" && !s.TokenExpiry.IsZero() &&
		now.Add(refreshMargin).After(s.TokenExpiry)
}

var (
	errRefreshRefused   = errors.New("refresh token refused")
	errRefreshBusy      = errors.New("refresh under way elsewhere")
	errNoLongerAdmitted = errors.New("no longer admitted by the allow rules")
)

// refresh renews the session's tokens with its refresh token. One refresh per session runs at
// a time; a request that finds one under way goes on with the tokens it has.
func (h *Handler) refresh(r *http.Request, s *session.Session) error {
	ctx, cancel := context.WithTimeout(r.Context(), providerTimeout)
	defer cancel()
	unlock, ok, err := h.store.TryLock(ctx, "refresh\x00"+s.ID, refreshLockTTL)
	if err != nil || !ok {
		return errRefreshBusy
	}
	// After a success the lock is left to expire: requests still carrying the old cookie must
	// not spend the old refresh token again (providers that rotate them revoke on reuse).
	renewed := false
	defer func() {
		if !renewed {
			unlock()
		}
	}()
	d, err := h.provider.get()
	if err != nil {
		return err
	}
	src := h.oauth2Config(d, r).TokenSource(h.provider.clientContext(ctx), &oauth2.Token{
		RefreshToken: s.RefreshToken,
		Expiry:       time.Unix(1, 0), // force the renewal
	})
	tok, err := src.Token()
	if err != nil {
		// Only invalid_grant says the grant is gone; a 429, a 5xx or a misconfigured client
		// secret is the provider's or the operator's trouble, not a reason to sign users out.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return errRefreshRefused
		}
		h.logger.Warn("refreshing tokens", zap.String("session_id", s.ID), zap.Error(err))
		return err
	}
	if raw, ok := tok.Extra("id_token").(string); ok && raw != "" {
		idt, reason := h.verifyIDToken(ctx, d, raw, h.now())
		if idt == nil || idt.Subject != s.Subject {
			h.logger.Warn("refreshed ID token refused", zap.String("session_id", s.ID), zap.String("reason", reason))
			return errRefreshRefused
		}
		// The renewed identity passes the allow rules again, and its claims replace the old.
		id, perr, _ := h.identify(ctx, d, idt, tok.AccessToken)
		if perr != nil {
			return errors.New("identifying the refreshed tokens")
		}
		if ok, _ := h.allow.Admit(ctx, id, requestVars(r)); !ok || id.Imp != nil {
			return errNoLongerAdmitted
		}
		fresh := h.newSession(id, tok, raw, s.TokenAudience, h.now())
		s.Email, s.EmailVerified, s.Name, s.PreferredUsername = fresh.Email, fresh.EmailVerified, fresh.Name, fresh.PreferredUsername
		s.Groups, s.Claims = fresh.Groups, fresh.Claims
		if s.IDToken != "" {
			s.IDToken = raw
		}
	}
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	s.TokenExpiry = tok.Expiry
	if s.TokenAudience != "" && !h.verifiesForAudience(ctx, d, tok.AccessToken) {
		s.TokenAudience = ""
	}
	if s.TokenAudience != "" && h.headers.accessToken != "" {
		s.AccessToken = tok.AccessToken
	} else {
		s.AccessToken = ""
	}
	renewed = true
	return nil
}

// verifiesForAudience reports whether the access token is a JWT, signed by the provider, for
// the configured audience. Anything else (opaque, or Auth0's userinfo-only impersonation
// token) is userinfo-only.
func (h *Handler) verifiesForAudience(ctx context.Context, d *discovered, accessToken string) bool {
	if d.atVerifier == nil || accessToken == "" {
		return false
	}
	_, err := d.atVerifier.Verify(ctx, accessToken)
	return err == nil
}
