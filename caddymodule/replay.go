package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Key prefixes in the store, one per kind of thing remembered.
const (
	keyAttempt     = "attempt\x00"     // a login attempt, once its callback arrived
	keyCode        = "code\x00"        // a redeemed authorization code
	keyIDToken     = "idtoken\x00"     // an ID token of an unsolicited response
	keyAccessToken = "accesstoken\x00" // an access token posted without a code
	keyState       = "state\x00"       // a signed impersonation state, once used
	keyConfirm     = "confirm\x00"     // a confirmation page's one-time token
	keyRefresh     = "refresh\x00"     // the lock of one session's refresh
	keyLogoutToken = "logout\x00"      // a back-channel logout token's jti
)

// response is what an unsolicited response is remembered by.
type response struct {
	code, idToken, accessToken, state string
	idExpiry                          time.Time
}

// claimOnce records the response's code, ID token, posted access token and signed state in
// the store, refusing any of them seen before. A store that cannot answer refuses too (503):
// a replay must never pass because the store was down or full.
func (h *Handler) claimOnce(ctx context.Context, resp response) error {
	now := h.now()
	if resp.code != "" {
		if err := h.claim(ctx, keyCode+tokenHash(resp.code), now.Add(attemptTTL), "code replayed"); err != nil {
			return err
		}
	}
	if err := h.claim(ctx, keyIDToken+tokenHash(resp.idToken), resp.idExpiry, "ID token replayed"); err != nil {
		return err
	}
	if resp.code == "" {
		if err := h.claim(ctx, keyAccessToken+tokenHash(resp.accessToken), resp.idExpiry, "access token replayed"); err != nil {
			return err
		}
	}
	if h.imp.stateMode == stateSigned {
		return h.claim(ctx, keyState+resp.state, now.Add(signedStateTTL+maxIssuedAtSkew), "signed state already used")
	}
	return nil
}

// claim takes key in the store until expires. A key taken before is an impersonation denial
// with the reason used; a store error is a 503.
func (h *Handler) claim(ctx context.Context, key string, expires time.Time, used string) error {
	ok, err := h.store.Claim(ctx, key, expires)
	switch {
	case err != nil:
		return refuse(errStoreUnavailable, evImpersonationDenied, "store unavailable: "+err.Error()).causedBy(err)
	case !ok:
		return impersonationDenied(used)
	}
	return nil
}

// tokenHash names a token in the store without storing the token.
func tokenHash(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:16])
}

// beforeHorizon reports whether t is earlier than the store's memory: something minted then
// may have been used already without the store knowing (an in-memory store after a restart).
// A second of slack absorbs the whole-second times of tokens.
func (h *Handler) beforeHorizon(t time.Time) bool {
	horizon := h.store.Horizon()
	return !horizon.IsZero() && t.Before(horizon.Add(-time.Second))
}
