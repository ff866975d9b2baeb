// Package jwk computes JSON Web Key thumbprints (RFC 7638): the kid of the client's private_key_jwt
// assertions and of the identity assertion's signing keys.
package jwk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

var b64 = base64.RawURLEncoding

// Thumbprint is the RFC 7638 JWK thumbprint of an RSA or P-256 public key: SHA-256 of the
// required members in lexicographic order, without whitespace, base64url-encoded.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	var members any
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		members = struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()), "RSA", b64.EncodeToString(pub.N.Bytes())}
	case *ecdsa.PublicKey:
		point, err := pub.Bytes() // 0x04 || x || y, each 32 bytes on P-256
		if err != nil || pub.Curve != elliptic.P256() || len(point) != 65 {
			return "", errors.New("the EC public key is not a P-256 point")
		}
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{"P-256", "EC", b64.EncodeToString(point[1:33]), b64.EncodeToString(point[33:])}
	default:
		return "", fmt.Errorf("no thumbprint for a %T", pub)
	}
	// encoding/json writes struct fields in order and without whitespace.
	b, err := json.Marshal(members)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return b64.EncodeToString(sum[:]), nil
}
