// Signing keys: the key the provider signs with, the keys its JWKS publishes, and the
// published keys' shapes that some misbehaviours call for.

package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"sync"
)

// signingKeyEntry is one of the provider's RSA keys.
type signingKeyEntry struct {
	kid string
	key *rsa.PrivateKey
}

// signingKey returns the key new tokens are signed with, and its kid.
func (s *Server) signingKey() (*rsa.PrivateKey, string) {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	k := s.keys[len(s.keys)-1]
	return k.key, k.kid
}

// verificationKeys returns the published keys that may have signed a token with this kid:
// the one with that kid, or every key when kid is empty.
func (s *Server) verificationKeys(kid string) []*rsa.PublicKey {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	var out []*rsa.PublicKey
	for _, k := range s.keys {
		if kid == "" || k.kid == kid {
			out = append(out, &k.key.PublicKey)
		}
	}
	return out
}

// decoyKey is a key the JWKS publishes beside the real ones when a misbehaviour wants
// several candidate keys; it never signs anything. One for the process: generating an RSA
// key is slow.
var decoyKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// handleJWKS publishes the public keys, oldest first. With KidAbsentSingleJWKS only the
// signing key is published; with KidAbsentMultipleJWKS a decoy is added when there would be
// fewer than two; with either, the keys carry no kid.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	m := s.misbehaviour()
	var keys []jwk
	s.keyMu.RLock()
	for i, k := range s.keys {
		if m.has(KidAbsentSingleJWKS) && !m.has(KidAbsentMultipleJWKS) && i != len(s.keys)-1 {
			continue
		}
		keys = append(keys, publicJWK(&k.key.PublicKey, k.kid))
	}
	s.keyMu.RUnlock()
	if m.has(KidAbsentMultipleJWKS) && len(keys) < 2 {
		d, err := decoyKey()
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		keys = append([]jwk{publicJWK(&d.PublicKey, keyID(&d.PublicKey))}, keys...)
	}
	if m.kidAbsent() {
		for i := range keys {
			keys[i].Kid = ""
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Keys []jwk `json:"keys"`
	}{keys})
}
