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
		h.event(evImpersonationDenied, r, e.because(reason))
		h.writeError(w, r, errImpersonationRefused)
	}
	if iss := params.Get("iss"); iss != "" && iss != h.Issuer {
		deny(auditEntry{}, "iss parameter names another issuer")
		return
	}
	if reason := h.checkUnsolicitedState(params.Get("state"), now); reason != "" {
		deny(auditEntry{}, reason)
		return
	}
	if !h.admitCallback(w, r) {
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
	// The ID token is what binds the response to this client (aud), says when it was made
	// (freshness) and, for posted tokens, vouches for the access token (at_hash). Without one,
	// an access token leaked from any application of the tenant would be enough.
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		deny(auditEntry{}, "no ID token (the impersonation scope must include openid)")
		return
	}
	idt, reason := h.verifyIDToken(ctx, d, raw, now)
	if idt == nil {
		deny(auditEntry{}, reason)
		return
	}
	if idt.Nonce != "" {
		// Nobody asked for this response, so it cannot carry a nonce of ours.
		deny(auditEntry{Subject: idt.Subject}, "ID token carries a nonce")
		return
	}
	// An ID token that names its access token (at_hash, which OpenID Connect requires beside
	// tokens in a response) must name this one. Whether Auth0 sends it with impersonation
	// tokens is not documented, so its absence is tolerated: aud, freshness, the replay cache
	// and the userinfo sub check still bind the access token to this sign-in.
	posted := params.Get("code") == ""
	if posted && idt.AccessTokenHash != "" && idt.VerifyAccessToken(tok.AccessToken) != nil {
		deny(auditEntry{Subject: idt.Subject}, "access token is not the one the ID token vouches for (at_hash)")
		return
	}
	if d.userinfoURL == "" || tok.AccessToken == "" {
		deny(auditEntry{}, "no access token for userinfo")
		return
	}
	id, perr, reason := h.identify(ctx, d, idt, tok.AccessToken)
	if perr != nil {
		h.event(evImpersonationDenied, r, auditEntry{Subject: idt.Subject, Reason: reason})
		h.writeError(w, r, perr)
		return
	}
	if id.Imp == nil {
		h.bounce(w, r, entryForIdentity(id).because("unsolicited response for an identity that is not impersonated"), h.imp.landing)
		return
	}
	// A response is as old as its oldest evidence: a code exchanged late still yields a fresh
	// iat, while auth_time says when the link was followed.
	issued := idt.IssuedAt
	if at, ok := id.Claims["auth_time"].(float64); ok && time.Unix(int64(at), 0).Before(issued) {
		issued = time.Unix(int64(at), 0)
	}
	if now.Sub(issued) > h.imp.maxAge {
		deny(entryForIdentity(id), "response is stale")
		return
	}
	if h.imp.stateMode == stateSigned && !h.signedStateMatches(params.Get("state"), id.Imp) {
		deny(entryForIdentity(id), "signed state was minted for another impersonator")
		return
	}
	if ok, why := h.imp.Decide(ctx, id, requestVars(r)); !ok {
		deny(entryForIdentity(id), why)
		return
	}
	if ok, why := h.allow.Admit(ctx, id, requestVars(r)); !ok {
		deny(entryForIdentity(id), "target not admitted: "+why)
		return
	}
	// Only a response that passed everything takes room in the replay store, so garbage
	// cannot fill it.
	if why := h.claimOnce(ctx, params.Get("code"), raw, idt.Expiry, tok.AccessToken, params.Get("state")); why != "" {
		deny(entryForIdentity(id), why)
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
// takes the tokens posted to the callback.
func (h *Handler) unsolicitedTokens(ctx context.Context, d *discovered, r *http.Request, params url.Values, now time.Time) (*oauth2.Token, *pageError, string) {
	if code := params.Get("code"); code != "" {
		tok, perr := h.exchange(ctx, d, r, code)
		if perr == errUnreachable {
			return nil, perr, "provider unreachable"
		}
		if perr != nil {
			return nil, errImpersonationRefused, "code refused by the provider (replayed or expired): " + perr.Detail
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
	return tok.WithExtra(map[string]any{"id_token": it}), nil, ""
}

// claimOnce records a verified response in the replay store: its code (the provider refuses
// a second exchange too), its ID token, a posted access token, and a signed state. It returns
// why the response was seen before, or "".
func (h *Handler) claimOnce(ctx context.Context, code, idToken string, idExpiry time.Time, accessToken, state string) string {
	if code != "" {
		if ok, _ := h.store.Claim(ctx, "code\x00"+tokenHash(code), h.now().Add(attemptTTL)); !ok {
			return "code replayed"
		}
	}
	if ok, _ := h.store.Claim(ctx, "idtoken\x00"+tokenHash(idToken), idExpiry); !ok {
		return "ID token replayed"
	}
	if code == "" {
		if ok, _ := h.store.Claim(ctx, "accesstoken\x00"+tokenHash(accessToken), idExpiry); !ok {
			return "access token replayed"
		}
	}
	if h.imp.stateMode == stateSigned {
		if ok, _ := h.store.Claim(ctx, "state\x00"+state, h.now().Add(signedStateTTL+maxIssuedAtSkew)); !ok {
			return "signed state already used"
		}
	}
	return ""
}

// checkUnsolicitedState applies the state policy; it returns why the state fails, or "".
func (h *Handler) checkUnsolicitedState(state string, now time.Time) string {
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
	}
	return ""
}

// bounce audits an unsolicited response that is not trusted and starts a fresh ordinary
// login to landing (the OpenID Connect answer to an IdP-initiated response). Its state is our
// own, so a browser without cookies ends on the "could not be completed" page, not in a loop.
func (h *Handler) bounce(w http.ResponseWriter, r *http.Request, e auditEntry, landing string) {
	h.event(evUnsolicitedBounced, r, e)
	if r.Method == http.MethodPost {
		// The redirects that answer a form post are bound by the posting page's form-action
		// (the relay page allows only 'self'), so the fresh login starts from a page of its own.
		h.continueTo(w, h.startURL(landing), "Signing in", "Continuing to sign-in…")
		return
	}
	h.startLogin(w, r, landing)
}

// tokenHash names a token in the replay store without storing the token.
func tokenHash(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:16])
}
