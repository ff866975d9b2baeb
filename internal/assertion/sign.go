package assertion

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Claims are what an assertion says. Empty optional claims are left out.
type Claims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	// NotBefore is IssuedAt.
	NotBefore int64  `json:"nbf"`
	Expiry    int64  `json:"exp"`
	ID        string `json:"jti"`
	// Email is present only when the provider verified it, and EmailVerified then true.
	Email             string   `json:"email,omitempty"`
	EmailVerified     bool     `json:"email_verified,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	// SessionID is the module's session ID, when the identity has one.
	SessionID string `json:"sid,omitempty"`
	// Actor is the impersonator of an impersonated session (RFC 8693 section 4.1).
	Actor *Actor `json:"act,omitempty"`
}

// Actor is who acts as the subject.
type Actor struct {
	Subject string `json:"sub"`
	// Email is present only when the provider (or the operator) vouches for it.
	Email string `json:"email,omitempty"`
}

// NewID is a random assertion ID (jti).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Sign returns c signed by k as a compact JWS (header.payload.signature).
func (k *Key) Sign(c *Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding assertion claims: %w", err)
	}
	enc := base64.RawURLEncoding
	n := len(k.header) + 1 + enc.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+enc.EncodedLen(64))
	copy(buf, k.header)
	buf[len(k.header)] = '.'
	enc.Encode(buf[len(k.header)+1:], payload)
	digest := sha256.Sum256(buf)
	r, s, err := ecdsa.Sign(rand.Reader, k.private, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing assertion: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// Verify checks a compact ES256 JWS against pub and decodes its claims. It checks only the
// signature and the header: the application's checks of iss, aud and exp are its own.
func Verify(token string, pub *ecdsa.PublicKey, into any) (kid string, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWS")
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(parts[0])
	if err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	var hdr struct{ Alg, Kid, Typ string }
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	if hdr.Alg != "ES256" {
		return "", fmt.Errorf("alg %q, want ES256", hdr.Alg)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return "", errors.New("bad signature encoding")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var r, s big.Int
	if !ecdsa.Verify(pub, digest[:], r.SetBytes(sig[:32]), s.SetBytes(sig[32:])) {
		return "", errors.New("signature does not verify")
	}
	pb, err := enc.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	if err := json.Unmarshal(pb, into); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	return hdr.Kid, nil
}

// Expiry is when an assertion issued at now ends: after lifetime, but never after the
// session it speaks for.
func Expiry(now time.Time, lifetime time.Duration, sessionEnd time.Time) time.Time {
	exp := now.Add(lifetime)
	if !sessionEnd.IsZero() && sessionEnd.Before(exp) {
		return sessionEnd
	}
	return exp
}
