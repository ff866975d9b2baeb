package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// maxIssuedAtSkew is how far in the future an ID token's iat may be (clock skew).
const maxIssuedAtSkew = 2 * time.Minute

// A verification is one request's work with the provider: the code exchange, the ID token,
// /userinfo and the access token's audience. Its calls share one bounded context carrying the
// module's HTTP client; close releases it.
type verification struct {
	p           *provider
	d           *discovered
	ctx         context.Context
	close       context.CancelFunc
	redirectURL string
	mapping     claims.Mapping
	groupsClaim string
}

// verifier starts a verification for r, discovering the provider first when needed.
func (h *Handler) verifier(r *http.Request) (*verification, error) {
	d, err := h.provider.get()
	if err != nil {
		return nil, unreachable(err)
	}
	ctx, cancel := context.WithTimeout(h.provider.clientContext(r.Context()), h.provider.cfg.timeout)
	v := &verification{p: h.provider, d: d, ctx: ctx, close: cancel, redirectURL: h.redirectURL(r),
		groupsClaim: h.groupsClaim()}
	if h.imp != nil {
		v.mapping = h.imp.mapping
	}
	return v, nil
}

// exchange redeems the code; a refusal is the provider's answer (400), anything else means
// the provider could not be reached (502).
func (v *verification) exchange(code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, error) {
	tok, err := v.p.oauth2Config(v.d, v.redirectURL).Exchange(v.ctx, code, opts...)
	if err == nil {
		return tok, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 &&
		re.Response.StatusCode != http.StatusTooManyRequests {
		reason, detail := exchangeRefusal(re)
		v.p.cfg.logger.Warn("the provider refused the code exchange", zap.Int("status", re.Response.StatusCode),
			zap.String("error", re.ErrorCode), zap.String("error_description", truncate(oneLine(re.ErrorDescription), 200)),
			zap.String("redirect_uri", v.redirectURL))
		return nil, loginFailed(errProviderRefused.withDetail(detail), reason).causedBy(err)
	}
	v.p.cfg.logger.Warn("exchanging code", zap.Error(err))
	return nil, exchangeFailed(err)
}

// idToken checks the signature, iss, aud, exp (go-oidc), iat against clock skew and the
// subject. The nonce is the caller's to check.
func (v *verification) idToken(raw string, now time.Time) (*oidc.IDToken, error) {
	idt, err := v.d.idVerifier.Verify(v.ctx, raw)
	switch {
	case err != nil && keysUnavailable(err):
		v.p.cfg.logger.Warn("fetching the provider's keys", zap.Error(err))
		return nil, loginFailed(errUnreachable, withCause("provider keys unavailable", err)).causedBy(err)
	case err != nil:
		short, full := idTokenProblem(err, now)
		return nil, loginFailed(errBadCallback.withDetail("The ID token does not verify: "+short+"."),
			"ID token does not verify: "+full).causedBy(err)
	case idt.IssuedAt.IsZero():
		// OpenID Connect Core §2 makes iat required; without it freshness cannot be judged.
		return nil, loginFailed(errBadCallback, "ID token has no iat")
	case idt.IssuedAt.After(now.Add(maxIssuedAtSkew)):
		return nil, loginFailed(errBadCallback.withDetail("The ID token was issued in the future (check the clocks)."),
			fmt.Sprintf("ID token issued in the future: iat %s ahead of this server's time (check the clocks)",
				idt.IssuedAt.Sub(now.Truncate(time.Second))))
	case idt.Subject == "":
		return nil, loginFailed(errBadCallback, "ID token has no subject")
	}
	// OpenID Connect Core 3.1.3.7: an ID token for several audiences names its authorized
	// party, and an authorized party present must be this client (go-oidc checks aud only).
	var azp struct {
		AuthorizedParty string `json:"azp"`
	}
	if err := idt.Claims(&azp); err != nil {
		return nil, loginFailed(errBadCallback, "ID token claims do not decode")
	}
	if (len(idt.Audience) > 1 && azp.AuthorizedParty == "") ||
		(azp.AuthorizedParty != "" && azp.AuthorizedParty != v.p.cfg.clientID) {
		return nil, loginFailed(errBadCallback, "ID token's authorized party (azp) is not this client")
	}
	return idt, nil
}

// keysUnavailable tells a key set that could not be fetched (the provider's trouble) from a
// token that does not verify (the response's).
func keysUnavailable(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "fetching keys")
}

// forAudience reports whether the access token is a JWT, signed by the provider, for the
// configured audience. Anything else (opaque, or Auth0's userinfo-only impersonation token)
// is userinfo-only.
func (v *verification) forAudience(accessToken string) bool {
	if v.d.atVerifier == nil || accessToken == "" {
		return false
	}
	_, err := v.d.atVerifier.Verify(v.ctx, accessToken)
	return err == nil
}

// identify merges the ID token's claims with /userinfo's, whose sub must be the ID token's,
// and reads the identity and any impersonation from them. Where both carry a claim, the
// signed ID token's value is kept; impersonation is read from each source, and either one
// saying so makes the login impersonated.
func (v *verification) identify(idt *oidc.IDToken, tok *oauth2.Token) (*claims.Identity, error) {
	accessToken := tok.AccessToken
	c := claims.Set{}
	if err := idt.Claims(&c); err != nil {
		return nil, loginFailed(errBadCallback, "ID token claims do not decode")
	}
	imp, impersonated := v.mapping.Detect(c)
	if v.d.userinfoURL != "" && accessToken != "" {
		ui, err := v.d.p.UserInfo(v.ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
		if err != nil {
			if userinfoRefused(err) {
				return nil, loginFailed(errBadCallback, "userinfo refused the access token").causedBy(err)
			}
			v.p.cfg.logger.Warn("fetching userinfo", zap.Error(err))
			return nil, loginFailed(errProviderFailed, withCause("userinfo request failed", err)).causedBy(err)
		}
		if ui.Subject != idt.Subject {
			return nil, loginFailed(errBadCallback, "userinfo sub differs from the ID token's")
		}
		var uc claims.Set
		if err := ui.Claims(&uc); err != nil {
			return nil, loginFailed(errBadCallback, "userinfo claims do not decode")
		}
		switch uimp, ok := v.mapping.Detect(uc); {
		case !ok:
		case !impersonated:
			imp, impersonated = uimp, true
		case imp.ID == "" && imp.Email == "":
			// The ID token may say only that the login is impersonated (an Action adding the
			// flag alone); who did it may then be in /userinfo.
			imp = uimp
		}
		for k, val := range uc {
			if _, signed := c[k]; !signed {
				c[k] = val
			}
		}
	}
	id := claims.NewIdentity(c, v.groupsClaim)
	if id.Subject == "" {
		return nil, loginFailed(errBadCallback, "identity has no subject")
	}
	if impersonated {
		id.Imp = imp
	}
	id.Scopes = grantedScopes(tok)
	return id, nil
}

// grantedScopes are the scopes a token response says it grants; nil when it says nothing
// (RFC 6749 §5.1: then they are those requested, which only the caller knows).
func grantedScopes(tok *oauth2.Token) []string {
	s, _ := tok.Extra("scope").(string)
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return strings.Fields(s)
}

// userinfoRefused tells a provider's 4xx answer (a bad or foreign access token: the response
// is at fault, 400) from a network failure or a 5xx (the provider is, 502).
func userinfoRefused(err error) bool {
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "4") && !strings.HasPrefix(msg, "429")
}

// asDenial re-labels a verification refusal as an impersonation denial about who, keeping its
// reason, and its page unless page is given.
func asDenial(err error, page *pageError, who auditEntry) error {
	var rf *refusal
	if !errors.As(err, &rf) {
		return err
	}
	c := *rf
	c.event = evImpersonationDenied
	if page != nil {
		c.page = page
	}
	return c.about(who)
}
