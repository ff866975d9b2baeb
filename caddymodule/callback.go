package caddymodule

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"golang.org/x/oauth2"
)

const (
	// maxCallbackBody bounds a form-posted authorization response.
	maxCallbackBody = 64 << 10
	// maxParamLen bounds any single callback parameter we look at.
	maxParamLen = 16 << 10
)

// The parameters an authorization response may carry; a GET callback with none of them is a
// response in the URL fragment, which only the browser sees.
var responseParams = []string{"code", "state", "error", "id_token", "access_token", "iss"}

// tokenParams are the response parameters that carry tokens.
var tokenParams = []string{"id_token", "access_token"}

// serveCallback completes an authorization response: a code in the query or a form post,
// tokens in a form post, or tokens in the URL fragment (via the relay page).
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	params, err := callbackParams(w, r)
	if err != nil {
		return loginFailed(errBadCallback, "malformed callback: "+err.Error())
	}
	if r.Method == http.MethodGet && !hasAny(params, responseParams) {
		h.writePage(w, http.StatusOK, "relay.html", pageData{Title: "Completing sign-in", Action: h.callbackPath, Retry: h.retryURL})
		return nil
	}
	if r.Method == http.MethodGet && hasAny(params, tokenParams) {
		// Tokens travel in a form post or the fragment, never the query: a URL ends up in
		// access logs, the history and Referer headers. Only an unsolicited response carries
		// tokens, so with impersonation on this is an impersonation refused.
		event := evLoginFailed
		if h.imp != nil {
			event = evImpersonationDenied
		}
		return refuse(errBadCallback, event, "tokens in the query")
	}
	state := params.Get("state")
	info, ours := h.states.openLogin(state)
	if code := params.Get("error"); code != "" {
		return h.providerError(w, r, params, code, ours, info)
	}
	if ours {
		return h.completeSolicited(w, r, params, info)
	}
	return h.completeUnsolicited(w, r, params)
}

// providerError refuses an error response. Anyone can send this site a crafted error, and its
// words would appear on the site's own page: the provider's description is shown only when it
// answers a login this very browser started (its attempt cookie), and the code only when it is
// a standard one.
func (h *Handler) providerError(w http.ResponseWriter, r *http.Request, params url.Values, code string, ours bool, info loginState) error {
	own := false
	if ours {
		a, _ := h.takeAttempt(w, r, params.Get("state"), info)
		own = a != nil
	}
	if !knownErrorCodes[code] {
		code = "unknown_error"
	}
	page := errProviderRefused
	if code == "access_denied" {
		page = &pageError{http.StatusForbidden, page.Code, page.Title, page.Message, ""}
	}
	detail := code
	if own {
		detail += ": " + params.Get("error_description")
	}
	return loginFailed(page.withDetail(detail), "provider error: "+code)
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

// completeSolicited finishes a login this module started: state and its attempt cookie (used
// once), the code exchange with the PKCE verifier, the ID token with its nonce, then the
// policies.
func (h *Handler) completeSolicited(w http.ResponseWriter, r *http.Request, params url.Values, info loginState) error {
	now := h.now()
	if now.Sub(info.issued) > attemptTTL {
		h.jar.Clear(w, h.jar.AttemptPrefix()+info.id)
		return loginFailed(errAttemptExpired, "attempt expired")
	}
	a, present := h.takeAttempt(w, r, params.Get("state"), info)
	if !present {
		return loginFailed(errAttemptMissing, "attempt cookie missing")
	}
	if a == nil {
		return loginFailed(errStateMismatch, "state does not match the attempt")
	}
	if iss := params.Get("iss"); iss != "" && iss != h.Issuer {
		return loginFailed(errBadCallback, "iss parameter names another issuer")
	}
	code := params.Get("code")
	if code == "" {
		// This login asked for a code; tokens in its place are an injection attempt.
		return loginFailed(errBadCallback, "no code in a solicited response")
	}
	if err := h.admitSolicited(r); err != nil {
		return err
	}
	// The attempt is spent before the provider is asked: its cookie replayed with other codes
	// never reaches the provider again.
	if err := h.consumeAttempt(r, info); err != nil {
		return err
	}
	v, err := h.verifier(r)
	if err != nil {
		return err
	}
	defer v.close()
	tok, raw, id, err := h.redeem(v, code, a, now)
	if err != nil {
		// Only what the response got wrong is charged; the provider's own trouble (5xx) is not
		// the browser's doing.
		if page := pageOf(err); page == nil || page.Status < 500 {
			h.chargeFailure(r)
		}
		return err
	}
	if id.Imp != nil {
		if err := h.admitImpersonation(r, id); err != nil {
			return err
		}
	}
	if ok, why := h.allow.Admit(r.Context(), id, requestVars(r)); !ok {
		return loginFailed(errDenied, why).about(entryForIdentity(id))
	}
	audience := ""
	if id.Imp == nil && v.forAudience(tok.AccessToken) {
		audience = h.Audience
	}
	return h.issueSession(w, r, h.newSession(id, tok, raw, audience, now), a.ReturnTo)
}

// redeem exchanges the code of a solicited login and verifies what comes back: the ID token,
// its nonce, and the identity.
func (h *Handler) redeem(v *verification, code string, a *attempt, now time.Time) (*oauth2.Token, string, *claims.Identity, error) {
	tok, err := v.exchange(code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return nil, "", nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", nil, loginFailed(errBadCallback, "no ID token in the token response")
	}
	idt, err := v.idToken(raw, now)
	if err != nil {
		return nil, "", nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.Nonce)) != 1 {
		return nil, "", nil, loginFailed(errBadCallback, "nonce does not match")
	}
	id, err := v.identify(idt, tok)
	if err != nil {
		return nil, "", nil, err
	}
	if id.Scopes == nil {
		id.Scopes = h.Scopes // RFC 6749 §5.1: the scopes requested
	}
	return tok, raw, id, nil
}
