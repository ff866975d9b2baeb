package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

const (
	// maxCallbackBody bounds a form-posted authorization response.
	maxCallbackBody = 64 << 10
	// maxIssuedAtSkew is how far in the future an ID token's iat may be (clock skew).
	maxIssuedAtSkew = 2 * time.Minute
)

// The parameters an authorization response may carry; a GET callback with none of them is a
// response in the URL fragment, which only the browser sees.
var responseParams = []string{"code", "state", "error", "id_token", "access_token", "iss"}

// serveCallback completes an authorization response: a code in the query or a form post,
// tokens in a form post, or tokens in the URL fragment (via the relay page).
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		h.writeError(w, r, errMethod)
		return
	}
	params, err := callbackParams(w, r)
	if err != nil {
		h.event(evLoginFailed, r, auditEntry{Reason: "malformed callback: " + err.Error()})
		h.writeError(w, r, errBadCallback)
		return
	}
	if r.Method == http.MethodGet && !hasAny(params, responseParams) {
		h.writePage(w, http.StatusOK, "relay.html", pageData{Title: "Completing sign-in", Action: h.callbackPath(), Retry: h.startURL("/")})
		return
	}
	state := params.Get("state")
	info, ours := h.parseState(state)
	if code := params.Get("error"); code != "" {
		// Anyone can send this site a crafted error, and its words would appear on the site's
		// own page: the provider's description is shown only when it answers a login this very
		// browser started (its attempt cookie), and the code only when it is a standard one.
		own := false
		if ours {
			a, _ := h.takeAttempt(w, r, state, info)
			own = a != nil
		}
		if !knownErrorCodes[code] {
			code = "unknown_error"
		}
		h.event(evLoginFailed, r, auditEntry{Reason: "provider error: " + code})
		e := errProviderRefused
		if code == "access_denied" {
			e = &pageError{http.StatusForbidden, e.Code, e.Title, e.Message, ""}
		}
		detail := code
		if own {
			detail += ": " + params.Get("error_description")
		}
		h.writeError(w, r, e.withDetail(detail))
		return
	}
	if ours {
		h.completeSolicited(w, r, params, state, info)
		return
	}
	h.completeUnsolicited(w, r, params)
}

// knownErrorCodes are the error codes of OAuth 2.0 and OpenID Connect authorization responses.
var knownErrorCodes = map[string]bool{
	"access_denied": true, "invalid_request": true, "unauthorized_client": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "interaction_required": true, "login_required": true,
	"account_selection_required": true, "consent_required": true, "invalid_request_uri": true,
	"invalid_request_object": true, "request_not_supported": true, "request_uri_not_supported": true,
	"registration_not_supported": true,
}

// callbackPath is the callback's path on this host.
func (h *Handler) callbackPath() string {
	return h.prefix + h.callbackName()
}

// callbackParams reads the response's parameters from the query (GET) or an urlencoded form
// (POST), refusing oversized bodies and parameters.
func callbackParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	var params url.Values
	if r.Method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, errors.New("form post is not urlencoded")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxCallbackBody)
		if err := r.ParseForm(); err != nil {
			return nil, errors.New("form does not parse")
		}
		params = r.PostForm
	} else {
		if len(r.URL.RawQuery) > maxCallbackBody {
			return nil, errors.New("query too long")
		}
		var err error
		if params, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			return nil, errors.New("query does not parse")
		}
	}
	for k, vs := range params {
		if len(vs) > 1 && hasAny(url.Values{k: nil}, responseParams) {
			return nil, fmt.Errorf("parameter %q repeated", k)
		}
		for _, v := range vs {
			if len(v) > maxParamLen {
				return nil, fmt.Errorf("parameter %q too long", k)
			}
		}
	}
	return params, nil
}

func hasAny(v url.Values, names []string) bool {
	for _, n := range names {
		if _, ok := v[n]; ok {
			return true
		}
	}
	return false
}

// completeSolicited finishes a login this module started: state and its attempt cookie, the
// code exchange with the PKCE verifier, the ID token with its nonce.
func (h *Handler) completeSolicited(w http.ResponseWriter, r *http.Request, params url.Values, state string, info stateInfo) {
	now := h.now()
	fail := func(e *pageError, reason string) {
		h.event(evLoginFailed, r, auditEntry{Reason: reason})
		h.writeError(w, r, e)
	}
	if now.Sub(info.issued) > attemptTTL {
		h.jar.Clear(w, h.jar.AttemptPrefix()+info.id)
		fail(errAttemptExpired, "attempt expired")
		return
	}
	a, present := h.takeAttempt(w, r, state, info)
	if !present {
		fail(errAttemptMissing, "attempt cookie missing")
		return
	}
	if a == nil {
		fail(errStateMismatch, "state does not match the attempt")
		return
	}
	if iss := params.Get("iss"); iss != "" && iss != h.Issuer {
		fail(errBadCallback, "iss parameter names another issuer")
		return
	}
	code := params.Get("code")
	if code == "" {
		// This login asked for a code; tokens in its place are an injection attempt.
		fail(errBadCallback, "no code in a solicited response")
		return
	}
	if !h.admitCallback(w, r) {
		return
	}
	d, err := h.provider.get()
	if err != nil {
		fail(errUnreachable, "provider unreachable")
		return
	}
	ctx, cancel := context.WithTimeout(h.provider.clientContext(r.Context()), providerTimeout)
	defer cancel()
	tok, perr := h.exchange(ctx, d, r, code, oauth2.VerifierOption(a.Verifier))
	if perr != nil {
		fail(perr, "code exchange failed")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(errBadCallback, "no ID token in the token response")
		return
	}
	idt, reason := h.verifyIDToken(ctx, d, raw, now)
	if idt == nil {
		fail(errBadCallback, reason)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.Nonce)) != 1 {
		fail(errBadCallback, "nonce does not match")
		return
	}
	id, perr, reason := h.identify(ctx, d, idt, tok.AccessToken)
	if perr != nil {
		fail(perr, reason)
		return
	}
	if id.Imp != nil && !h.admitImpersonation(w, r, id) {
		return
	}
	if ok, why := h.allow.Admit(ctx, id, requestVars(r)); !ok {
		h.event(evLoginFailed, r, entryForIdentity(id).because(why))
		h.writeError(w, r, errDenied)
		return
	}
	audience := ""
	if id.Imp == nil && h.verifiesForAudience(ctx, d, tok.AccessToken) {
		audience = h.Audience
	}
	s := h.newSession(id, tok, raw, audience, now)
	h.issueSession(w, r, s, a.ReturnTo)
}

// exchange redeems the code; a refusal is the provider's answer (400), anything else means
// the provider could not be reached (502).
func (h *Handler) exchange(ctx context.Context, d *discovered, r *http.Request, code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, *pageError) {
	tok, err := h.oauth2Config(d, r).Exchange(ctx, code, opts...)
	if err == nil {
		return tok, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 &&
		re.Response.StatusCode != http.StatusTooManyRequests {
		return nil, errProviderRefused.withDetail(re.ErrorCode)
	}
	h.logger.Warn("exchanging code", zap.Error(err))
	return nil, errUnreachable
}

// verifyIDToken checks the signature, iss, aud, exp (go-oidc) and iat against clock skew.
// The nonce is the caller's to check.
func (h *Handler) verifyIDToken(ctx context.Context, d *discovered, raw string, now time.Time) (*oidc.IDToken, string) {
	idt, err := d.idVerifier.Verify(ctx, raw)
	if err != nil {
		return nil, "ID token does not verify"
	}
	if idt.IssuedAt.After(now.Add(maxIssuedAtSkew)) {
		return nil, "ID token issued in the future"
	}
	if idt.Subject == "" {
		return nil, "ID token has no subject"
	}
	return idt, ""
}

// issueSession sets the session cookie, audits the login and sends the browser on.
func (h *Handler) issueSession(w http.ResponseWriter, r *http.Request, s *session.Session, returnTo string) {
	if s.Impersonated {
		h.stashOwnSession(w, r, s)
	}
	if !h.writeSession(w, r, s) {
		h.event(evLoginFailed, r, entryFor(s).because("session too large for cookies"))
		h.writeError(w, r, errSessionTooLarge)
		return
	}
	if s.Impersonated {
		h.event(evImpersonationStarted, r, entryFor(s))
	} else {
		h.event(evLogin, r, entryFor(s))
	}
	h.sendOn(w, r, returnTo)
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
