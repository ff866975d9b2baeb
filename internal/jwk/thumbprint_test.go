package jwk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"math/big"
	"testing"
)

func TestThumbprintsFollowRFC7638(t *testing.T) {
	t.Parallel()
	t.Run("the RFC's own RSA example gives its thumbprint", func(t *testing.T) {
		// RFC 7638 §3.1.
		n, err := b64.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
		if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
			t.Fatalf("Thumbprint = %q, %v", got, err)
		}
	})
	t.Run("a P-256 key hashes crv, kty, x and y in that order", func(t *testing.T) {
		// The P-256 key of RFC 7515 appendix A.3; the expected value was computed
		// independently with go-jose's Thumbprint.
		x, _ := b64.DecodeString("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
		y, _ := b64.DecodeString("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(pub)
		if err != nil || got != "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U" {
			t.Fatalf("Thumbprint = %q, %v", got, err)
		}
	})
	t.Run("other keys have none", func(t *testing.T) {
		if _, err := Thumbprint("not a key"); err == nil {
			t.Error("a string had a thumbprint")
		}
	})
}
