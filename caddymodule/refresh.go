package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

const (
	// refreshMargin: tokens are renewed this long before they expire.
	refreshMargin = time.Minute
	// refreshLockTTL bounds how long one refresh may hold a session's lock.
	refreshLockTTL = 30 * time.Second
)

var (
	errRefreshRefused   = errors.New("refresh token refused")
	errRefreshBusy      = errors.New("refresh under way elsewhere")
	errNoLongerAdmitted = errors.New("no longer admitted by the allow rules")
)

// refresh renews the session's tokens with its refresh token. One refresh per session runs at
// a time; a request that finds one under way goes on with the tokens it has.
func (h *Handler) refresh(r *http.Request, s *session.Session) error {
	v, err := h.verifier(r)
	if err != nil {
		return err
	}
	defer v.close()
	unlock, ok, err := h.store.TryLock(v.ctx, keyRefresh+s.ID, refreshLockTTL)
	if err != nil {
		h.logger.Warn("taking the refresh lock", zap.String("session_id", s.ID), zap.Error(err))
	}
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
	src := h.provider.oauth2Config(v.d, v.redirectURL).TokenSource(v.ctx, &oauth2.Token{
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
		idt, err := v.idToken(raw, h.now())
		if err != nil || idt.Subject != s.Subject {
			h.logger.Warn("refreshed ID token refused", zap.String("session_id", s.ID), zap.Error(err))
			return errRefreshRefused
		}
		// The renewed identity passes the allow rules again, and its claims replace the old.
		id, err := v.identify(idt, tok)
		if err != nil {
			return errors.New("identifying the refreshed tokens")
		}
		if id.Scopes == nil {
			id.Scopes = strings.Fields(s.Scopes) // RFC 6749 §5.1: as originally granted
		}
		if ok, _ := h.allow.Admit(v.ctx, id, requestVars(r)); !ok || id.Imp != nil {
			return errNoLongerAdmitted
		}
		fresh := h.newSession(id, tok, raw, s.TokenAudience, h.now())
		s.Email, s.EmailVerified, s.Name, s.PreferredUsername = fresh.Email, fresh.EmailVerified, fresh.Name, fresh.PreferredUsername
		s.Groups, s.Claims, s.RuleClaims, s.Scopes = fresh.Groups, fresh.Claims, fresh.RuleClaims, fresh.Scopes
		h.decisions.drop(s.ID)
		if s.IDToken != "" {
			s.IDToken = raw
		}
	}
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	s.TokenExpiry = tok.Expiry
	if s.TokenAudience != "" && !v.forAudience(tok.AccessToken) {
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
