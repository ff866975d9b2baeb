package session

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// DeriveKey derives a 32-byte key for one purpose from a secret; every key the module uses
// comes from here, each under its own purpose string.
func DeriveKey(secret, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, purpose, 32)
	if err != nil {
		panic("hkdf with a 32-byte output cannot fail: " + err.Error())
	}
	return k
}
