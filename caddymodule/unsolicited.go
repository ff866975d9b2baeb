package caddymodule

import (
	"crypto/subtle"
	"errors"
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
func (h *Handler) completeUnsolicited(w http.ResponseWriter, r *http.Request, params url.Values) (err error) {
	bounced := false
	defer func() {
		switch {
		case bounced: // counted by bounce
		case err != nil:
			h.metrics.countUnsolicited("refused")
		default:
			h.metrics.countUnsolicited("accepted")
		}
	}()
	if h.imp == nil {
		bounced = true
		h.bounce(w, r, auditEntry{Reason: "unsolicited response and impersonation is not enabled"}, "/")
		return nil
	}
	now := h.now()
	if iss := params.Get("iss"); iss != "" && iss != h.Issuer {
		return impersonationDenied("iss parameter names another issuer")
	}
	if reason := h.checkUnsolicitedState(params.Get("state"), now); reason != "" {
		return impersonationDenied(reason)
	}
	if err := h.admitUnsolicited(r); err != nil {
		return err
	}
	v, err := h.verifier(r)
	if err != nil {
		return err
	}
	defer v.close()
	tok, err := h.unsolicitedTokens(v, params, now)
	if err != nil {
		return err
	}
	// The ID token is what binds the response to this client (aud), says when it was made
	// (freshness) and, for posted tokens, vouches for the access token (at_hash). Without one,
	// an access token leaked from any application of the tenant would be enough.
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return impersonationDenied("no ID token (the impersonation scope must include openid)")
	}
	idt, err := v.idToken(raw, now)
	if err != nil {
		return asDenial(err, errImpersonationRefused, auditEntry{})
	}
	who := auditEntry{Subject: idt.Subject}
	if idt.Nonce != "" {
		// Nobody asked for this response, so it cannot carry a nonce of ours.
		return impersonationDenied("ID token carries a nonce").about(who)
	}
	// An ID token that names its access token (at_hash, which OpenID Connect requires beside
	// tokens in a response) must name this one. Whether Auth0 sends it with impersonation
	// tokens is not documented, so its absence is tolerated: aud, freshness, the replay cache
	// and the userinfo sub check still bind the access token to this sign-in.
	posted := params.Get("code") == ""
	if posted && idt.AccessTokenHash != "" && idt.VerifyAccessToken(tok.AccessToken) != nil {
		return impersonationDenied("access token is not the one the ID token vouches for (at_hash)").about(who)
	}
	if v.d.userinfoURL == "" || tok.AccessToken == "" {
		return impersonationDenied("no access token for userinfo")
	}
	id, err := v.identify(idt, tok)
	if err != nil {
		return asDenial(err, nil, who)
	}
	if id.Imp == nil {
		bounced = true
		h.bounce(w, r, entryForIdentity(id).because("unsolicited response for an identity that is not impersonated"), h.imp.landing)
		return nil
	}
	target := entryForIdentity(id)
	// A response is as old as its oldest evidence: a code exchanged late still yields a fresh
	// iat, while auth_time says when the link was followed.
	issued := idt.IssuedAt
	if at, ok := id.Claims["auth_time"].(float64); ok && time.Unix(int64(at), 0).Before(issued) {
		issued = time.Unix(int64(at), 0)
	}
	if now.Sub(issued) > h.imp.maxAge {
		return impersonationDenied("response is stale").about(target)
	}
	if h.beforeHorizon(idt.IssuedAt) {
		// Posted tokens made before a restart may have been used then: the store cannot say.
		return impersonationDenied("ID token older than the store's memory (restart)").about(target)
	}
	if h.imp.stateMode == stateSigned && !h.states.signedBy(params.Get("state"), id.Imp) {
		return impersonationDenied("signed state was minted for another impersonator").about(target)
	}
	if ok, why := h.imp.Decide(r.Context(), id, requestVars(r)); !ok {
		return impersonationDenied(why).about(target)
	}
	if ok, why := h.allow.Admit(r.Context(), id, requestVars(r)); !ok {
		return impersonationDenied("target not admitted: " + why).about(target)
	}
	// Only a response that passed everything takes room in the replay store, so garbage
	// cannot fill it.
	if err := h.claimOnce(r.Context(), response{code: params.Get("code"), idToken: raw, idExpiry: idt.Expiry,
		accessToken: tok.AccessToken, state: params.Get("state")}); err != nil {
		return asDenial(err, nil, target)
	}
	s := h.newSession(id, tok, raw, "", now)
	if h.imp.confirm {
		return h.askConfirmation(w, r, s, id)
	}
	return h.issueSession(w, r, s, h.imp.landing)
}

// unsolicitedTokens redeems the code (client secret, no PKCE: nothing was challenged) or
// takes the tokens posted to the callback.
func (h *Handler) unsolicitedTokens(v *verification, params url.Values, now time.Time) (*oauth2.Token, error) {
	if code := params.Get("code"); code != "" {
		tok, err := v.exchange(code)
		var rf *refusal
		switch {
		case err == nil:
			return tok, nil
		case !errors.As(err, &rf) || rf.page.Status >= 500:
			return nil, asDenial(err, nil, auditEntry{})
		default:
			return nil, impersonationDenied("code refused by the provider (replayed or expired): " +
				strings.TrimPrefix(rf.entry.Reason, "code exchange refused: "))
		}
	}
	at, it := params.Get("access_token"), params.Get("id_token")
	if at == "" && it == "" {
		return nil, refuse(errBadCallback, evImpersonationDenied, "no code and no tokens")
	}
	if tt := params.Get("token_type"); tt != "" && !strings.EqualFold(tt, "bearer") {
		return nil, refuse(errBadCallback, evImpersonationDenied, "token type is not Bearer")
	}
	tok := &oauth2.Token{AccessToken: at, TokenType: "Bearer"}
	if secs, err := strconv.Atoi(params.Get("expires_in")); err == nil && secs > 0 {
		tok.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	return tok.WithExtra(map[string]any{"id_token": it, "scope": params.Get("scope")}), nil
}

// checkUnsolicitedState applies the state policy; it returns why the state fails, or "".
func (h *Handler) checkUnsolicitedState(state string, now time.Time) string {
	switch h.imp.stateMode {
	case stateFixed:
		if subtle.ConstantTimeCompare([]byte(state), []byte(h.imp.stateValue)) != 1 {
			return "state does not match the fixed value"
		}
	case stateSigned:
		info, ok := h.states.openSigned(state)
		if !ok {
			return "state is not a signed impersonation state"
		}
		if now.Sub(info.issued) > signedStateTTL || info.issued.After(now.Add(maxIssuedAtSkew)) {
			return "signed state expired"
		}
		if h.beforeHorizon(info.issued) {
			return "signed state older than the store's memory (restart)"
		}
	}
	return ""
}

// bounce audits an unsolicited response that is not trusted and starts a fresh ordinary
// login to landing (the OpenID Connect answer to an IdP-initiated response). Its state is our
// own, so a browser without cookies ends on the "could not be completed" page, not in a loop.
func (h *Handler) bounce(w http.ResponseWriter, r *http.Request, e auditEntry, landing string) {
	h.metrics.countUnsolicited("bounced")
	h.event(evUnsolicitedBounced, r, e)
	if r.Method == http.MethodPost {
		// The redirects that answer a form post are bound by the posting page's form-action
		// (the relay page allows only 'self'), so the fresh login starts from a page of its own.
		h.continueTo(w, h.startURL(landing), "Signing in", "Continuing to sign-in…")
		return
	}
	_ = h.answer(w, r, h.startLogin(w, r, landing))
}
