package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

const (
	// attemptTTL is how long a login attempt may take at the provider.
	attemptTTL = 10 * time.Minute
	// signedStateTTL is how long a minted impersonation state may wait to be used.
	signedStateTTL = 10 * time.Minute
	// signedStateBound is the length of the data a signed state is bound to:
	// sha256(the minting administrator's sub)[:8], so it works only for their own impersonations.
	signedStateBound  = 8
	signedStatePrefix = "i."
)

// stateKeys mints and opens the two kinds of state the module makes: the state of a login it
// starts, and the signed state an administrator pastes into the provider's impersonation
// form. Both are MAC tokens (mactoken.go): the module tells its own without keeping anything.
// The first key of each list mints; all open (secret rotation).
type stateKeys struct {
	login, signed [][]byte
}

// newStateKeys derives the keys from the session secrets, bound to the provider and client
// (provKey): a state minted for one provider is not another's, even under the same secret.
func newStateKeys(secrets []string, provKey string) stateKeys {
	var k stateKeys
	for _, secret := range secrets {
		k.login = append(k.login, session.DeriveKey(secret, "caddy-oidc-auth state v1 "+provKey))
		k.signed = append(k.signed, session.DeriveKey(secret, "caddy-oidc-auth impersonation state v1 "+provKey))
	}
	return k
}

// loginState is what a login state says: when it was minted, and the attempt cookie's suffix
// (base64url of its random part), so parallel tabs never clash.
type loginState struct {
	issued time.Time
	id     string
}

// mintLogin returns a new login state.
func (k stateKeys) mintLogin(now time.Time) (string, loginState) {
	state, random := mintMACToken(k.login[0], now, nil)
	return state, loginState{issued: now.Truncate(time.Second), id: base64.RawURLEncoding.EncodeToString(random)}
}

// openLogin reports whether state is a login state the module minted, and what it says.
func (k stateKeys) openLogin(state string) (loginState, bool) {
	issued, random, _, ok := openMACToken(k.login, state, 0)
	if !ok {
		return loginState{}, false
	}
	return loginState{issued: issued, id: base64.RawURLEncoding.EncodeToString(random)}, true
}

// signedState is what a signed impersonation state says.
type signedState struct {
	issued time.Time
	minter []byte
}

// mintSigned returns a signed impersonation state for the administrator whose sub is minter.
func (k stateKeys) mintSigned(now time.Time, minter string) string {
	sum := sha256.Sum256([]byte(minter))
	state, _ := mintMACToken(k.signed[0], now, sum[:signedStateBound])
	return signedStatePrefix + state
}

// openSigned reports whether state is a signed impersonation state the module minted.
func (k stateKeys) openSigned(state string) (signedState, bool) {
	enc, ok := strings.CutPrefix(state, signedStatePrefix)
	if !ok {
		return signedState{}, false
	}
	issued, _, minter, ok := openMACToken(k.signed, enc, signedStateBound)
	return signedState{issued: issued, minter: minter}, ok
}

// signedBy: the state is a signed state minted by the impersonator the provider names.
func (k stateKeys) signedBy(state string, imp *claims.Impersonator) bool {
	info, ok := k.openSigned(state)
	if !ok || imp == nil {
		return false
	}
	sum := sha256.Sum256([]byte(imp.ID))
	return subtle.ConstantTimeCompare(sum[:signedStateBound], info.minter) == 1
}

// stateLen is the length of a login state.
var stateLen = macTokenLen(0)
