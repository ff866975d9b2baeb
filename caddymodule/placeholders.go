package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// placeholders publishes the session as {http.auth.user.*}. Values are computed only when a
// placeholder is read, so an unused one costs nothing.
func publishPlaceholders(repl *caddy.Replacer, s *session.Session) {
	const prefix = "http.auth.user."
	// Values go through headerSafe: a placeholder may well end up in a header (header_up).
	repl.Map(func(key string) (any, bool) {
		if !strings.HasPrefix(key, prefix) {
			return nil, false
		}
		switch key[len(prefix):] {
		case "id":
			return claims.HeaderSafe(s.Subject), true
		case "email":
			return claims.HeaderSafe(s.Email), true
		case "name":
			return claims.HeaderSafe(s.Name), true
		case "preferred_username":
			return claims.HeaderSafe(s.PreferredUsername), true
		case "groups":
			return joinGroups(s.Groups), true
		case "impersonated":
			if s.Impersonated {
				return "true", true
			}
			return "false", true
		case "impersonator.id":
			return claims.HeaderSafe(s.ImpersonatorID), true
		case "impersonator.email":
			return claims.HeaderSafe(verifiedOr(s.ImpersonatorEmail, s.ImpersonatorEmailVerified)), true
		case "impersonator.email_unverified":
			return claims.HeaderSafe(verifiedOr(s.ImpersonatorEmail, !s.ImpersonatorEmailVerified)), true
		case "session_id":
			return s.ID, true
		case "token_audience":
			return tokenAudience(s), true
		case "scopes":
			return claims.HeaderSafe(s.Scopes), true
		}
		if name, ok := strings.CutPrefix(key, prefix+"claims."); ok {
			return s.ClaimValue(name)
		}
		return nil, false
	})
}

// tokenAudience is the audience the session's access token is good for: the configured one,
// or "userinfo" for a token good only at the provider's /userinfo.
func tokenAudience(s *session.Session) string {
	if s.TokenAudience == "" {
		return "userinfo"
	}
	return s.TokenAudience
}

// verifiedOr is email when cond holds, else "".
func verifiedOr(email string, cond bool) string {
	if cond {
		return email
	}
	return ""
}
