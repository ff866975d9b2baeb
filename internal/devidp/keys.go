// Signing keys: the key the provider signs with, the keys its JWKS publishes, their
// rotation, and the published keys' shapes that some misbehaviours call for.

package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"slices"
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

// RotateKey generates a new 2048-bit RSA key and signs with it from now on. The older keys
// stay in the JWKS, so tokens they signed still verify, until RemoveKey or RetireOldKeys.
// It returns the new key's kid (its RFC 7638 thumbprint). Safe for concurrent use.
func (s *Server) RotateKey() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("devidp: generating signing key: %w", err)
	}
	return s.RotateKeyTo(key)
}

// RotateKeyTo is RotateKey with a key of the caller's (tests reuse keys: generating one is
// slow). It refuses a key the JWKS already holds.
func (s *Server) RotateKeyTo(key *rsa.PrivateKey) (string, error) {
	if key == nil {
		return "", fmt.Errorf("devidp: RotateKeyTo needs a key")
	}
	kid := keyID(&key.PublicKey)
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if slices.ContainsFunc(s.keys, func(k signingKeyEntry) bool { return k.kid == kid }) {
		return "", fmt.Errorf("devidp: key %s is already published", kid)
	}
	s.keys = append(s.keys, signingKeyEntry{kid: kid, key: key})
	return kid, nil
}

// RemoveKey takes an old key out of the JWKS: tokens it signed no longer verify. It refuses
// the key that signs now and a kid it does not publish.
func (s *Server) RemoveKey(kid string) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	i := slices.IndexFunc(s.keys, func(k signingKeyEntry) bool { return k.kid == kid })
	switch {
	case i < 0:
		return fmt.Errorf("devidp: no published key has kid %q", kid)
	case i == len(s.keys)-1:
		return fmt.Errorf("devidp: key %s signs now; rotate before removing it", kid)
	}
	s.keys = slices.Delete(s.keys, i, i+1)
	return nil
}

// RetireOldKeys takes every key but the signing one out of the JWKS and returns their kids.
func (s *Server) RetireOldKeys() []string {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	var old []string
	for _, k := range s.keys[:len(s.keys)-1] {
		old = append(old, k.kid)
	}
	s.keys = s.keys[len(s.keys)-1:]
	return old
}

// Kids lists the kids of the published keys, oldest first: the last one signs.
func (s *Server) Kids() []string {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	var kids []string
	for _, k := range s.keys {
		kids = append(kids, k.kid)
	}
	return kids
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
