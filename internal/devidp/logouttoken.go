// Logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4), as the provider sends them
// and, with options, spoiled in the ways a client must refuse.

package devidp

import (
	"time"
)

// backchannelEvent is the events member that makes a JWT a logout token.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenTTL is the lifetime of the logout tokens the provider sends.
const logoutTokenTTL = 2 * time.Minute

// logoutToken is a logout token being minted: its claims and how to sign them.
type logoutToken struct {
	claims map[string]any
	how    signing
}

// LogoutTokenOption changes a token made by MintLogoutToken, to make a bad one.
type LogoutTokenOption func(*logoutToken)

// LogoutWithNonce adds a nonce, which a logout token must not have.
func LogoutWithNonce(nonce string) LogoutTokenOption {
	return func(t *logoutToken) { t.claims["nonce"] = nonce }
}

// LogoutWithoutEvent leaves out the events claim.
func LogoutWithoutEvent() LogoutTokenOption {
	return func(t *logoutToken) { delete(t.claims, "events") }
}

// LogoutAudience sets aud to aud instead of the client id.
func LogoutAudience(aud string) LogoutTokenOption {
	return func(t *logoutToken) { t.claims["aud"] = aud }
}

// LogoutIssuer sets iss to iss instead of the provider's issuer.
func LogoutIssuer(iss string) LogoutTokenOption {
	return func(t *logoutToken) { t.claims["iss"] = iss }
}

// LogoutExpired makes a token issued ten minutes ago that expired five minutes ago.
func LogoutExpired() LogoutTokenOption {
	return func(t *logoutToken) {
		iat := time.Unix(t.claims["iat"].(int64), 0)
		t.claims["iat"], t.claims["exp"] = iat.Add(-10*time.Minute).Unix(), iat.Add(-5*time.Minute).Unix()
	}
}

// LogoutTyp sets the header typ instead of "logout+jwt"; "" sends "JWT".
func LogoutTyp(typ string) LogoutTokenOption {
	return func(t *logoutToken) { t.how.typ = typ }
}

// LogoutUnsigned sends the token with alg "none" and no signature.
func LogoutUnsigned() LogoutTokenOption {
	return func(t *logoutToken) { t.how.unsigned = true }
}

// MintLogoutToken returns a signed logout token for clientID about the session sid of sub,
// as the provider sends them: header typ "logout+jwt" and the signing key's kid; claims iss,
// aud (clientID), iat, exp (two minutes later), a unique jti, events
// {"http://schemas.openid.net/event/backchannel-logout": {}}, sid and sub (each left out
// when empty), and no nonce. opts make bad variants for tests.
func (s *Server) MintLogoutToken(clientID, sub, sid string, opts ...LogoutTokenOption) (string, error) {
	now := s.now()
	t := logoutToken{
		claims: map[string]any{
			"iss":    s.issuer(),
			"aud":    clientID,
			"iat":    now.Unix(),
			"exp":    now.Add(logoutTokenTTL).Unix(),
			"jti":    newID(),
			"events": map[string]any{backchannelEvent: map[string]any{}},
		},
		how: signing{typ: "logout+jwt"},
	}
	if sub != "" {
		t.claims["sub"] = sub
	}
	if sid != "" {
		t.claims["sid"] = sid
	}
	for _, o := range opts {
		o(&t)
	}
	return s.signWith(t.how, t.claims)
}
