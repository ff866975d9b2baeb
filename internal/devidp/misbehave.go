// Misbehaviour switches: deliberate protocol violations, modelled on the OpenID Foundation's
// relying-party certification modules (oidcc-client-test-*), so a relying party's checks can
// be tested against a provider that gets things wrong on the wire.

package devidp

import (
	"fmt"
	"slices"
	"time"
)

// Misbehaviour is one deliberate violation. Set them with Config.Misbehave or, at run time,
// SetMisbehaviour. Each changes what the provider sends, not what it believes: a code
// redeemed under TokenEndpoint500 is spent, as it would be at a provider that failed after
// doing its work.
//
// The ID-token switches apply to every ID token the provider issues (code, implicit,
// refresh and impersonation responses) unless said otherwise. c_hash is not simulated: the
// provider supports no hybrid response type, so it never issues one.
type Misbehaviour string

// ID token violations.
const (
	// IDTokenWithoutIat leaves out `iat` (oidcc-client-test-missing-iat).
	IDTokenWithoutIat Misbehaviour = "id-token-missing-iat"
	// IDTokenWrongIssuer sets `iss` to WrongIssuer (oidcc-client-test-invalid-iss).
	IDTokenWrongIssuer Misbehaviour = "id-token-invalid-iss"
	// IDTokenWithoutSub leaves out `sub` (oidcc-client-test-missing-sub).
	IDTokenWithoutSub Misbehaviour = "id-token-missing-sub"
	// IDTokenWrongAudience sets `aud` to WrongAudience and leaves out `azp`
	// (oidcc-client-test-invalid-aud).
	IDTokenWrongAudience Misbehaviour = "id-token-invalid-aud"
	// IDTokenAlgNone sends the ID token unsigned: header alg "none", no kid, an empty
	// signature (oidcc-client-test-idtoken-sig-none).
	IDTokenAlgNone Misbehaviour = "id-token-sig-none"
	// IDTokenBadSignature sends an RS256 signature, of the right length and encoding, that
	// does not verify (oidcc-client-test-invalid-sig-rs256).
	IDTokenBadSignature Misbehaviour = "id-token-invalid-sig-rs256"
	// KidAbsentSingleJWKS signs without a `kid` header and publishes only the signing key,
	// itself without kid (oidcc-client-test-kid-absent-single-jwks). It applies to every JWT
	// the provider signs, since no published key has a kid to name. A relying party should
	// accept such ID tokens.
	KidAbsentSingleJWKS Misbehaviour = "kid-absent-single-jwks"
	// KidAbsentMultipleJWKS signs without a `kid` header and publishes every key without kid,
	// with a decoy RSA key added when there would be fewer than two
	// (oidcc-client-test-kid-absent-multiple-jwks). Every JWT, as above. A relying party may
	// refuse such ID tokens or try each key.
	KidAbsentMultipleJWKS Misbehaviour = "kid-absent-multiple-jwks"
	// IDTokenWrongNonce puts a random `nonce` in place of the requested one
	// (oidcc-client-test-nonce-invalid); an ID token for a request without nonce has none.
	IDTokenWrongNonce Misbehaviour = "id-token-nonce-invalid"
	// IDTokenWrongAtHash puts a wrong `at_hash` in the ID tokens that carry one: those next
	// to an access token in an authorization response (implicit `id_token token`, and
	// impersonation-link token responses), in any response mode
	// (oidcc-client-test-invalid-athash).
	IDTokenWrongAtHash Misbehaviour = "id-token-invalid-athash"
	// IDTokenExpired issues ID tokens whose `exp` passed an hour ago (`iat` two hours ago).
	IDTokenExpired Misbehaviour = "id-token-expired"
	// IDTokenIssuedInFuture sets `iat` a day ahead (and `exp` one lifetime after that).
	IDTokenIssuedInFuture Misbehaviour = "id-token-iat-future"
	// IDTokenNotYetValid adds an `nbf` an hour ahead.
	IDTokenNotYetValid Misbehaviour = "id-token-nbf-future"
)

// Other endpoints' violations.
const (
	// UserinfoWrongSub makes /userinfo answer another `sub` than the ID token's: another
	// configured user's, else the sub with "-other" appended
	// (oidcc-client-test-userinfo-invalid-sub).
	UserinfoWrongSub Misbehaviour = "userinfo-invalid-sub"
	// DiscoveryWrongIssuer makes discovery announce WrongIssuer as its `issuer`
	// (oidcc-client-test-discovery-issuer-mismatch). Tokens keep the configured issuer.
	DiscoveryWrongIssuer Misbehaviour = "discovery-issuer-mismatch"
	// TokenAuthPostOnly makes the token endpoint accept only client_secret_post: HTTP Basic
	// and private_key_jwt get 401 invalid_client, and discovery announces
	// ["client_secret_post"]. Public clients still authenticate by client_id.
	TokenAuthPostOnly Misbehaviour = "token-auth-post-only"
	// TokenAuthBasicOnly makes the token endpoint accept only client_secret_basic
	// (oidcc-client-test-client-secret-basic), the other methods getting 401 invalid_client,
	// and discovery announces ["client_secret_basic"]. Public clients are unaffected.
	TokenAuthBasicOnly Misbehaviour = "token-auth-basic-only"
	// RefreshWrongIssuer makes the ID token of a refresh_token grant carry WrongIssuer
	// (oidcc-client-test-refresh-token-invalid-issuer).
	RefreshWrongIssuer Misbehaviour = "refresh-token-invalid-issuer"
	// RefreshWrongSub makes the ID token of a refresh_token grant carry another `sub`, chosen
	// as for UserinfoWrongSub (oidcc-client-test-refresh-token-invalid-sub).
	RefreshWrongSub Misbehaviour = "refresh-token-invalid-sub"
)

// Values the violations put on the wire, for tests to compare with.
const (
	// WrongIssuer is the issuer of IDTokenWrongIssuer, RefreshWrongIssuer and
	// DiscoveryWrongIssuer.
	WrongIssuer = "https://wrong-issuer.example/"
	// WrongAudience is the audience of IDTokenWrongAudience.
	WrongAudience = "another-client"
)

// misbehaviours lists every switch, for validation.
var misbehaviours = append([]Misbehaviour{
	IDTokenWithoutIat, IDTokenWrongIssuer, IDTokenWithoutSub, IDTokenWrongAudience, IDTokenAlgNone,
	IDTokenBadSignature, KidAbsentSingleJWKS, KidAbsentMultipleJWKS, IDTokenWrongNonce, IDTokenWrongAtHash,
	IDTokenExpired, IDTokenIssuedInFuture, IDTokenNotYetValid,
	UserinfoWrongSub, DiscoveryWrongIssuer, TokenAuthPostOnly, TokenAuthBasicOnly,
	RefreshWrongIssuer, RefreshWrongSub,
}, faultSwitches()...)

// Misbehaviours returns every known switch, for listing them (as cmd/devidp does).
func Misbehaviours() []Misbehaviour { return slices.Clone(misbehaviours) }

// misbehaviourSet is the set in force; it is replaced whole, never changed.
type misbehaviourSet map[Misbehaviour]bool

func (m misbehaviourSet) has(b Misbehaviour) bool { return m[b] }

func (m misbehaviourSet) kidAbsent() bool { return m[KidAbsentSingleJWKS] || m[KidAbsentMultipleJWKS] }

// SetMisbehaviour replaces the violations in force with ms (none: a well-behaved provider).
// It refuses an unknown switch and then changes nothing. Safe for concurrent use; requests
// already under way may see the old set.
func (s *Server) SetMisbehaviour(ms ...Misbehaviour) error {
	set := misbehaviourSet{}
	for _, m := range ms {
		if !slices.Contains(misbehaviours, m) {
			return fmt.Errorf("devidp: unknown misbehaviour %q", m)
		}
		set[m] = true
	}
	s.misbehave.Store(&set)
	return nil
}

func (s *Server) misbehaviour() misbehaviourSet { return *s.misbehave.Load() }

// spoilIDToken applies the ID-token switches in force to claims c, issued at now, and says
// how to sign them. renewal is true for a refresh_token grant's ID token.
func (s *Server) spoilIDToken(c map[string]any, now time.Time, renewal bool) signing {
	m := s.misbehaviour()
	if m.has(IDTokenWrongIssuer) || renewal && m.has(RefreshWrongIssuer) {
		c["iss"] = WrongIssuer
	}
	if sub, _ := c["sub"].(string); renewal && m.has(RefreshWrongSub) {
		c["sub"] = s.otherSub(sub)
	}
	if m.has(IDTokenWithoutSub) {
		delete(c, "sub")
	}
	if m.has(IDTokenWrongAudience) {
		c["aud"] = WrongAudience
		delete(c, "azp")
	}
	if _, ok := c["nonce"]; ok && m.has(IDTokenWrongNonce) {
		c["nonce"] = newID()
	}
	if _, ok := c["at_hash"]; ok && m.has(IDTokenWrongAtHash) {
		c["at_hash"] = halfHash("not the access token")
	}
	if m.has(IDTokenExpired) {
		c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	}
	if m.has(IDTokenIssuedInFuture) {
		c["iat"], c["exp"] = now.Add(24*time.Hour).Unix(), now.Add(24*time.Hour+idTokenTTL).Unix()
	}
	if m.has(IDTokenNotYetValid) {
		c["nbf"] = now.Add(time.Hour).Unix()
	}
	if m.has(IDTokenWithoutIat) {
		delete(c, "iat")
	}
	return signing{unsigned: m.has(IDTokenAlgNone), badSig: m.has(IDTokenBadSignature)}
}

// otherSub is a sub that is not sub: another configured user's, else sub with "-other".
func (s *Server) otherSub(sub string) string {
	for _, u := range s.users {
		if u.ID != sub {
			return u.ID
		}
	}
	return sub + "-other"
}
