package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

var b64 = base64.RawURLEncoding

// jwk is the public signing key as JWKS publishes it. Kid is omitted when a misbehaviour
// publishes keys without one.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func publicJWK(pub *rsa.PublicKey, kid string) jwk {
	return jwk{
		Kty: "RSA", Use: "sig", Alg: "RS256", Kid: kid,
		N: b64.EncodeToString(pub.N.Bytes()),
		E: b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// keyID is the key's RFC 7638 thumbprint.
func keyID(pub *rsa.PublicKey) string {
	k := publicJWK(pub, "")
	sum := sha256.Sum256([]byte(`{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`))
	return b64.EncodeToString(sum[:])
}

// jwtHeader is a JWS protected header.
type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid,omitempty"`
}

// signing says how to sign one token. The zero value is the provider's ordinary RS256 JWT
// with typ "JWT" and the current key's kid.
type signing struct {
	typ      string // header typ; "" means "JWT"
	kid      string // header kid instead of the signing key's
	noKid    bool   // no kid in the header
	unsigned bool   // alg "none" and an empty signature
	badSig   bool   // an RS256 signature that does not verify
}

// signWith makes a JWT of claims as o says: base64url(header).base64url(payload).base64url(signature).
func (s *Server) signWith(o signing, claims any) (string, error) {
	key, kid := s.signingKey()
	h := jwtHeader{Alg: "RS256", Typ: o.typ, Kid: kid}
	if h.Typ == "" {
		h.Typ = "JWT"
	}
	if o.kid != "" {
		h.Kid = o.kid
	}
	if o.noKid || s.misbehaviour().kidAbsent() {
		h.Kid = ""
	}
	if o.unsigned {
		h.Alg, h.Kid = "none", ""
	}
	header, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	if o.unsigned {
		return input + ".", nil
	}
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	if o.badSig {
		sig[len(sig)/2] ^= 0x01 // still the right length and encoding, no longer valid
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// verify checks that token is an RS256 JWT signed by one of the provider's keys and decodes
// its claims into v. It checks no time: an expired ID token is still a good id_token_hint.
func (s *Server) verify(token string, v any) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var header jwtHeader
	raw, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &header) != nil || header.Alg != "RS256" {
		return errors.New("bad JWT header")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return errors.New("bad JWT signature encoding")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	ok := false
	for _, k := range s.verificationKeys(header.Kid) {
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
			ok = true
			break
		}
	}
	if !ok {
		return errors.New("bad JWT signature")
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return errors.New("bad JWT payload encoding")
	}
	return json.Unmarshal(payload, v)
}

// halfHash is the at_hash of an access token: the left half of its SHA-256, base64url.
func halfHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:len(sum)/2])
}
