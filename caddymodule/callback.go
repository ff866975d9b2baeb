package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
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
		h.writePage(w, http.StatusOK, "relay.html", pageData{Title: "Completing sign-in", Action: h.RedirectURIPath(), Retry: h.startURL("/")})
		return
	}
	state := params.Get("state")
	info, ours := h.parseState(state)
	if code := params.Get("error"); code != "" {
		if ours {
			h.jar.clear(w, h.jar.attemptPrefix()+info.id)
		}
		h.event(evLoginFailed, r, auditEntry{Reason: "provider error: " + code})
		e := errProviderRefused
		if code == "access_denied" {
			e = &pageError{http.StatusForbidden, e.Code, e.Title, e.Message, ""}
		}
		// The provider's description is shown only for a login of ours: anyone can send this
		// site a crafted error, and its words would appear on the site's own page.
		detail := code
		if ours {
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

// RedirectURIPath is the callback's path on this host.
func (h *Handler) RedirectURIPath() string {
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
		h.jar.clear(w, h.jar.attemptPrefix()+info.id)
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
	if id.imp != nil && !h.admitImpersonation(w, r, id) {
		return
	}
	if ok, why := h.allow.admit(ctx, id, requestVars(r)); !ok {
		e := entryForIdentity(id)
		e.Reason = why
		h.event(evLoginFailed, r, e)
		h.writeError(w, r, errDenied)
		return
	}
	audience := ""
	if id.imp == nil && h.verifiesForAudience(ctx, d, tok.AccessToken) {
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
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
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

// identify merges the ID token's claims with /userinfo's, whose sub must be the ID token's,
// and reads the identity and any impersonation from them. Where both carry a claim, the
// signed ID token's value is kept; impersonation is read from each source, and either one
// saying so makes the login impersonated.
func (h *Handler) identify(ctx context.Context, d *discovered, idt *oidc.IDToken, accessToken string) (*identity, *pageError, string) {
	c := claims{}
	if err := idt.Claims(&c); err != nil {
		return nil, errBadCallback, "ID token claims do not decode"
	}
	mapping := claimMapping{mode: "auto"}
	if h.imp != nil {
		mapping = h.imp.mapping
	}
	imp, impersonated := mapping.detect(c)
	if d.userinfoURL != "" && accessToken != "" {
		ui, err := d.p.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
		if err != nil {
			if userinfoRefused(err) {
				return nil, errBadCallback, "userinfo refused the access token"
			}
			h.logger.Warn("fetching userinfo", zap.Error(err))
			return nil, errProviderFailed, "userinfo request failed"
		}
		if ui.Subject != idt.Subject {
			return nil, errBadCallback, "userinfo sub differs from the ID token's"
		}
		var uc claims
		if err := ui.Claims(&uc); err != nil {
			return nil, errBadCallback, "userinfo claims do not decode"
		}
		if !impersonated {
			imp, impersonated = mapping.detect(uc)
		}
		for k, v := range uc {
			if _, signed := c[k]; !signed {
				c[k] = v
			}
		}
	}
	id := &identity{
		claims:        c,
		subject:       c.str("sub"),
		email:         c.str("email"),
		emailVerified: c.boolean("email_verified"),
		name:          c.str("name"),
		username:      c.str("preferred_username"),
		groups:        c.strings(h.groupsClaim()),
	}
	if id.subject == "" {
		return nil, errBadCallback, "identity has no subject"
	}
	if impersonated {
		id.imp = imp
	}
	return id, nil, ""
}

// userinfoRefused tells a provider's 4xx answer (a bad or foreign access token: the response
// is at fault, 400) from a network failure or a 5xx (the provider is, 502).
func userinfoRefused(err error) bool {
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	return strings.HasPrefix(err.Error(), "4")
}

func (h *Handler) groupsClaim() string {
	if h.Allow != nil && h.Allow.GroupsClaim != "" {
		return h.Allow.GroupsClaim
	}
	return "groups"
}

// requestVars is what policy expressions see of the request.
func requestVars(r *http.Request) map[string]any {
	return map[string]any{"host": r.Host, "method": r.Method, "path": r.URL.Path, "remote_ip": clientIP(r)}
}

// newSession builds the session for a verified identity. It keeps only what later requests
// need: the access token only when it may be forwarded, the refresh token only with refresh on.
func (h *Handler) newSession(id *identity, tok *oauth2.Token, rawIDToken, audience string, now time.Time) *Session {
	s := &Session{
		ID:                randomToken(16),
		Subject:           id.subject,
		EmailVerified:     id.emailVerified,
		Name:              id.name,
		PreferredUsername: id.username,
		Groups:            id.groups,
		TokenAudience:     audience,
		TokenExpiry:       tok.Expiry,
		Created:           now,
		LastSeen:          now,
		Expires:           now.Add(time.Duration(h.SessionLifetime)),
	}
	if id.emailVerified {
		// An unverified address is anyone's to type: it is never passed on as identity.
		s.Email = id.email
	}
	for _, name := range h.keep {
		if v, ok := id.claims.lookup(name); ok {
			s.Claims = append(s.Claims, Claim{Name: name, Value: render(v)})
		}
	}
	if audience != "" && h.headers.accessToken != "" {
		s.AccessToken = tok.AccessToken
		if !h.Refresh && !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	if h.headers.idToken != "" {
		s.IDToken = rawIDToken
	}
	if h.Refresh && id.imp == nil {
		s.RefreshToken = tok.RefreshToken
	}
	if id.imp != nil {
		s.Impersonated = true
		s.ImpersonatorID, s.ImpersonatorEmail = id.imp.ID, id.imp.Email
		s.Expires = now.Add(h.imp.lifetime)
		if !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	return s
}

// issueSession sets the session cookie, audits the login and sends the browser on.
func (h *Handler) issueSession(w http.ResponseWriter, r *http.Request, s *Session, returnTo string) {
	if s.Impersonated {
		h.stashOwnSession(w, r, s)
	}
	if !h.writeSession(w, r, s) {
		e := entryFor(s)
		e.Reason = "session too large for cookies"
		h.event(evLoginFailed, r, e)
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
	if h.jar.sameSite == http.SameSiteStrictMode {
		h.continueTo(w, path, "Signed in", "You are signed in.")
		return
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}
