package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// identify merges the ID token's claims with /userinfo's, whose sub must be the ID token's,
// and reads the identity and any impersonation from them. Where both carry a claim, the
// signed ID token's value is kept; impersonation is read from each source, and either one
// saying so makes the login impersonated.
func (h *Handler) identify(ctx context.Context, d *discovered, idt *oidc.IDToken, accessToken string) (*claims.Identity, *pageError, string) {
	c := claims.Set{}
	if err := idt.Claims(&c); err != nil {
		return nil, errBadCallback, "ID token claims do not decode"
	}
	mapping := claims.Mapping{}
	if h.imp != nil {
		mapping = h.imp.mapping
	}
	imp, impersonated := mapping.Detect(c)
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
		var uc claims.Set
		if err := ui.Claims(&uc); err != nil {
			return nil, errBadCallback, "userinfo claims do not decode"
		}
		switch uimp, ok := mapping.Detect(uc); {
		case !ok:
		case !impersonated:
			imp, impersonated = uimp, true
		case imp.ID == "" && imp.Email == "":
			// The ID token may say only that the login is impersonated (an Action adding the
			// flag alone); who did it may then be in /userinfo.
			imp = uimp
		}
		for k, v := range uc {
			if _, signed := c[k]; !signed {
				c[k] = v
			}
		}
	}
	id := &claims.Identity{
		Claims:        c,
		Subject:       c.Str("sub"),
		Email:         c.Str("email"),
		EmailVerified: c.Bool("email_verified"),
		Name:          c.Str("name"),
		Username:      c.Str("preferred_username"),
		Groups:        c.Strings(h.groupsClaim()),
	}
	if id.Subject == "" {
		return nil, errBadCallback, "identity has no subject"
	}
	if impersonated {
		id.Imp = imp
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
	msg := err.Error()
	return strings.HasPrefix(msg, "4") && !strings.HasPrefix(msg, "429")
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
func (h *Handler) newSession(id *claims.Identity, tok *oauth2.Token, rawIDToken, audience string, now time.Time) *session.Session {
	s := &session.Session{
		ID:                randomToken(16),
		Subject:           id.Subject,
		EmailVerified:     id.EmailVerified,
		Name:              id.Name,
		PreferredUsername: id.Username,
		Groups:            id.Groups,
		TokenAudience:     audience,
		TokenExpiry:       tok.Expiry,
		Created:           now,
		LastSeen:          now,
		Expires:           now.Add(time.Duration(h.SessionLifetime)),
	}
	if id.EmailVerified {
		// An unverified address is anyone's to type: it is never passed on as identity.
		s.Email = id.Email
	}
	for _, name := range h.keep {
		if v, ok := id.Claims.Lookup(name); ok {
			s.Claims = append(s.Claims, session.Claim{Name: name, Value: claims.Render(v)})
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
	if h.Refresh && id.Imp == nil {
		s.RefreshToken = tok.RefreshToken
	}
	if id.Imp != nil {
		s.Impersonated = true
		s.ImpersonatorID, s.ImpersonatorEmail = id.Imp.ID, id.Imp.Email
		s.Expires = now.Add(h.imp.lifetime)
		if !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	return s
}
