package caddymodule

import (
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Secrets of the unit tests: two, for rotation. Both are longer than session.MinSecretLen.
const (
	unitSecretOld = "unit-old-secret-0123456789abcdef-0123"
	unitSecretNew = "unit-new-secret-0123456789abcdef-4567"
)

// unitNow is the fixed clock of the unit tests; whole seconds, as the sealed expiry is.
var unitNow = time.Unix(1893456000, 0) // 2030-01-01T00:00:00Z

func unitSealer(tb testing.TB, secrets ...string) *session.Sealer {
	tb.Helper()
	s, err := session.NewSealer(secrets)
	if err != nil {
		tb.Fatalf("NewSealer: %v", err)
	}
	return s
}

// fullSession has every field set that the headers and placeholders read.
func fullSession() *session.Session {
	return &session.Session{
		ID:                "sess-0123456789",
		Subject:           "auth0|alice",
		Email:             "alice@example.com",
		EmailVerified:     true,
		Name:              "Alice Ängström",
		PreferredUsername: "alice",
		Groups:            []string{"staff", "admins", ""},
		Claims:            []session.Claim{{Name: "department", Value: "engineering"}, {Name: "roles", Value: "a,b"}, {Name: "https://example.com/tier", Value: "gold"}},
		Impersonated:      true,
		ImpersonatorID:    "auth0|admin",
		ImpersonatorEmail: "admin@example.com",
		AccessToken:       "access-token-value",
		TokenAudience:     "https://api.example.com",
		RefreshToken:      "refresh-token-value",
		IDToken:           "header.payload.signature",
		TokenExpiry:       time.Unix(1893459600, 0),
		Created:           time.Unix(1893456000, 0),
		Expires:           time.Unix(1893499200, 0),
		LastSeen:          time.Unix(1893457000, 0),
	}
}

// sealedSessionCookie is the Cookie header carrying s as the session h issued: sealed by h,
// for h's provider and client.
func sealedSessionCookie(h *Handler, s *session.Session) string {
	s.Provider = h.provKey
	return h.jar.Base + "=" + h.sealer.Seal(session.PurposeSession, s.Marshal(), s.Expires)
}
