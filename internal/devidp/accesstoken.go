// API access tokens: the client_credentials grant of machine clients, and MintAccessToken,
// which makes any bearer token (good or bad) for tests of a resource server.

package devidp

import (
	"net/http"
	"time"
)

// accessTokenTyp is the header typ of JWT access tokens (RFC 9068).
const accessTokenTyp = "at+jwt"

// Actor is the RFC 8693 `act` claim: who acts for the token's subject. A chain nests the
// previous actor in Act, the outermost being the current one.
type Actor struct {
	Sub string `json:"sub"`
	Act *Actor `json:"act,omitempty"`
}

// clientCredentials answers the client_credentials grant as Auth0 does for a machine
// client: a JWT access token for the required audience whose sub is "<client_id>@clients",
// with gty "client-credentials"; no ID token, no refresh token. The token is not good at
// /userinfo: it names no user.
func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request, c *Client) {
	if c.Secret == "" && len(c.PublicKeys) == 0 {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "A public client cannot use client_credentials.")
		return
	}
	aud := r.PostForm.Get("audience")
	if aud == "" {
		oauthError(w, http.StatusForbidden, "access_denied",
			"No audience parameter was provided, and no default audience has been configured")
		return
	}
	now := s.now()
	scope := r.PostForm.Get("scope")
	claims := map[string]any{
		"iss":       s.issuer(),
		"sub":       c.ID + "@clients",
		"aud":       aud,
		"azp":       c.ID,
		"client_id": c.ID,
		"iat":       now.Unix(),
		"exp":       now.Add(s.cfg.AccessTokenTTL).Unix(),
		"jti":       newID(),
		"gty":       "client-credentials",
	}
	if scope != "" {
		claims["scope"] = scope
	}
	tok, err := s.signWith(signing{typ: accessTokenTyp}, claims)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "The provider could not issue tokens.")
		return
	}
	writeJSON(w, http.StatusOK, tokenSet{AccessToken: tok, Scope: scope,
		ExpiresIn: int64(s.cfg.AccessTokenTTL.Seconds()), TokenType: "Bearer"})
}

// AccessTokenOptions describes a token for MintAccessToken. The zero value gives a token
// with only iss, iat, exp (one Config.AccessTokenTTL later) and jti, signed RS256 with the
// current key, header typ "at+jwt".
type AccessTokenOptions struct {
	// Subject is sub. Empty: no sub.
	Subject string
	// Audience is aud: one value is sent as a string, several as an array. Empty: no aud.
	Audience []string
	// Issuer is iss. Empty: the provider's issuer.
	Issuer string
	// ClientID is sent as azp and client_id. Empty: neither.
	ClientID string
	// Scope is the space-separated scope. Empty: no scope claim.
	Scope string
	// IssuedAt is iat. Zero: now, by the provider's clock.
	IssuedAt time.Time
	// ExpiresAt is exp. Zero: IssuedAt plus Config.AccessTokenTTL.
	ExpiresAt time.Time
	// NoExpiry leaves out exp.
	NoExpiry bool
	// NotBefore is nbf. Zero: no nbf.
	NotBefore time.Time
	// Act is the RFC 8693 actor claim. Nil: none.
	Act *Actor
	// Nonce makes an ID-token-shaped token (with Typ "JWT" and the client as Audience).
	// Empty: no nonce.
	Nonce string
	// Claims are more claims, set last, so they can also replace the ones above.
	Claims map[string]any
	// Typ is the header typ. Empty: "at+jwt".
	Typ string
	// Kid is the header kid instead of the signing key's: a kid the JWKS does not publish.
	Kid string
	// Unsigned sends alg "none" and no signature.
	Unsigned bool
	// BadSignature sends an RS256 signature that does not verify.
	BadSignature bool
}

// MintAccessToken returns a signed JWT made as o says, so tests can present any bearer
// token, good or bad. The provider does not remember it: it is not good at /userinfo.
func (s *Server) MintAccessToken(o AccessTokenOptions) (string, error) {
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	c := map[string]any{"iss": s.issuer(), "iat": iat.Unix(), "jti": newID()}
	if o.Issuer != "" {
		c["iss"] = o.Issuer
	}
	if !o.NoExpiry {
		exp := o.ExpiresAt
		if exp.IsZero() {
			exp = iat.Add(s.cfg.AccessTokenTTL)
		}
		c["exp"] = exp.Unix()
	}
	if !o.NotBefore.IsZero() {
		c["nbf"] = o.NotBefore.Unix()
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		c["aud"] = o.Audience[0]
	default:
		c["aud"] = o.Audience
	}
	for name, v := range map[string]string{"sub": o.Subject, "azp": o.ClientID, "client_id": o.ClientID,
		"scope": o.Scope, "nonce": o.Nonce} {
		if v != "" {
			c[name] = v
		}
	}
	if o.Act != nil {
		c["act"] = o.Act
	}
	for k, v := range o.Claims {
		c[k] = v
	}
	typ := o.Typ
	if typ == "" {
		typ = accessTokenTyp
	}
	return s.signWith(signing{typ: typ, kid: o.Kid, unsigned: o.Unsigned, badSig: o.BadSignature}, c)
}
