package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// completeUnsolicited handles an authorization response that answers no attempt of this
// browser: an IdP-initiated sign-in such as Auth0's "Sign in as User". It is trusted only with
// an impersonation block, only for an impersonated identity, and only under its policy;
// anything else is bounced into a fresh ordinary login.
func (h *Handler) completeUnsolicited(w http.ResponseWriter, r *http.Request, params url.Values) {
	if h.imp == nil {
		h.bounce(w, r, auditEntry{Reason: "unsolicited response and impersonation is not enabled"}, "/")
		return
	}
	now := h.now()
	deny := func(e auditEntry, reason string) {
		e.Reason = reason
		h.event(evImpersonationDenied, r, e)
		h.writeError(w, r, errImpersonationRefused)
	}
	if iss := params.Get("iss"); iss != "" && iss != h.Issuer {
		deny(auditEntry{}, "iss parameter names another issuer")
		return
	}
	if reason := h.checkUnsolicitedState(r.Context(), params.Get("state"), now); reason != "" {
		deny(auditEntry{}, reason)
		return
	}
	d, err := h.provider.get()
	if err != nil {
		h.event(evLoginFailed, r, auditEntry{Reason: "provider unreachable"})
		h.writeError(w, r, errUnreachable)
		return
	}
	ctx, cancel := context.WithTimeout(h.provider.clientContext(r.Context()), providerTimeout)
	defer cancel()

	tok, perr, reason := h.unsolicitedTokens(ctx, d, r, params, now)
	if perr != nil {
		h.event(evImpersonationDenied, r, auditEntry{Reason: reason})
		h.writeError(w, r, perr)
		return
	}
	var idt *oidc.IDToken
	raw, _ := tok.Extra("id_token").(string)
	if raw != "" {
		if idt, reason = h.verifyIDToken(ctx, d, raw, now); idt == nil {
			deny(auditEntry{}, reason)
			return
		}
		if idt.Nonce != "" {
			// Nobody asked for this response, so it cannot carry a nonce of ours.
			deny(auditEntry{Subject: idt.Subject}, "ID token carries a nonce")
			return
		}
	}
	if d.userinfoURL == "" || tok.AccessToken == "" {
		deny(auditEntry{}, "no access token for userinfo")
		return
	}
	id, perr, reason := h.identify(ctx, d, idt, tok.AccessToken)
	if perr != nil {
		h.event(evImpersonationDenied, r, auditEntry{Reason: reason})
		h.writeError(w, r, perr)
		return
	}
	if id.imp == nil {
		e := entryForIdentity(id)
		e.Reason = "unsolicited response for an identity that is not impersonated"
		h.bounce(w, r, e, h.imp.landing)
		return
	}
	if idt != nil {
		// A response is as old as its oldest evidence: a code exchanged late still yields a
		// fresh iat, while auth_time says when the link was followed.
		issued := idt.IssuedAt
		if at, ok := id.claims["auth_time"].(float64); ok && time.Unix(int64(at), 0).Before(issued) {
			issued = time.Unix(int64(at), 0)
		}
		if now.Sub(issued) > h.imp.maxAge {
			deny(entryForIdentity(id), "response is stale")
			return
		}
		if ok, _ := h.store.Claim(ctx, "idtoken\x00"+tokenHash(raw), idt.Expiry); !ok {
			deny(entryForIdentity(id), "ID token replayed")
			return
		}
	}
	if h.imp.stateMode == stateSigned && !h.signedStateMatches(params.Get("state"), id.imp) {
		deny(entryForIdentity(id), "signed state was minted for another impersonator")
		return
	}
	if ok, why := h.imp.decide(ctx, id, requestVars(r)); !ok {
		deny(entryForIdentity(id), why)
		return
	}
	if ok, why := h.allow.admit(ctx, id, requestVars(r)); !ok {
		deny(entryForIdentity(id), "target not admitted: "+why)
		return
	}
	s := h.newSession(id, tok, raw, "", now)
	if h.imp.confirm {
		h.askConfirmation(w, r, s)
		return
	}
	h.issueSession(w, r, s, h.imp.landing)
}

// unsolicitedTokens redeems the code (client secret, no PKCE: nothing was challenged) or
// takes the tokens posted to the callback. Each code is redeemed once: a replay is refused
// here even before the provider would.
func (h *Handler) unsolicitedTokens(ctx context.Context, d *discovered, r *http.Request, params url.Values, now time.Time) (*oauth2.Token, *pageError, string) {
	if code := params.Get("code"); code != "" {
		if ok, _ := h.store.Claim(ctx, "code\x00"+tokenHash(code), now.Add(attemptTTL)); !ok {
			return nil, errImpersonationRefused, "code replayed"
		}
		tok, perr := h.exchange(ctx, d, r, code)
		if perr != nil {
			return nil, perr, "code exchange failed"
		}
		return tok, nil, ""
	}
	at, it := params.Get("access_token"), params.Get("id_token")
	if at == "" && it == "" {
		return nil, errBadCallback, "no code and no tokens"
	}
	if tt := params.Get("token_type"); tt != "" && !strings.EqualFold(tt, "bearer") {
		return nil, errBadCallback, "token type is not Bearer"
	}
	tok := &oauth2.Token{AccessToken: at, TokenType: "Bearer"}
	if secs, err := strconv.Atoi(params.Get("expires_in")); err == nil && secs > 0 {
		tok.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	if at != "" {
		if ok, _ := h.store.Claim(ctx, "accesstoken\x00"+tokenHash(at), now.Add(24*time.Hour)); !ok {
			return nil, errImpersonationRefused, "access token replayed"
		}
	}
	return tok.WithExtra(map[string]any{"id_token": it}), nil, ""
}

// checkUnsolicitedState applies the state policy; it returns why the state fails, or "".
func (h *Handler) checkUnsolicitedState(ctx context.Context, state string, now time.Time) string {
	switch h.imp.stateMode {
	case stateFixed:
		if subtle.ConstantTimeCompare([]byte(state), []byte(h.imp.stateValue)) != 1 {
			return "state does not match the fixed value"
		}
	case stateSigned:
		info, ok := h.parseSignedState(state)
		if !ok {
			return "state is not a signed impersonation state"
		}
		if now.Sub(info.issued) > signedStateTTL || info.issued.After(now.Add(maxIssuedAtSkew)) {
			return "signed state expired"
		}
		if ok, _ := h.store.Claim(ctx, "state\x00"+state, info.issued.Add(signedStateTTL)); !ok {
			return "signed state already used"
		}
	}
	return ""
}

// bounce audits an unsolicited response that is not trusted and starts a fresh ordinary
// login to landing (the OpenID Connect answer to an IdP-initiated response). Its state is our
// own, so a browser without cookies ends on the "could not be completed" page, not in a loop.
func (h *Handler) bounce(w http.ResponseWriter, r *http.Request, e auditEntry, landing string) {
	h.event(evUnsolicitedBounced, r, e)
	h.startLogin(w, r, landing)
}

// tokenHash names a token in the replay store without storing the token.
func tokenHash(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:16])
}
