// Client authentication at the token endpoint: client_secret_basic, client_secret_post,
// private_key_jwt (RFC 7523 client assertions, RS256 or ES256), and public clients.

package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// assertionType is the client_assertion_type of private_key_jwt.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionTTL is the longest an accepted client assertion may still be valid: its jti
// is remembered that long to refuse replays.
const maxAssertionTTL = time.Hour

// checkPublicKeys refuses keys private_key_jwt cannot use.
func checkPublicKeys(c *Client) error {
	for i, k := range c.PublicKeys {
		switch k := k.(type) {
		case *rsa.PublicKey:
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return fmt.Errorf("devidp: client %q: public key %d is not on P-256 (ES256)", c.ID, i)
			}
		default:
			return fmt.Errorf("devidp: client %q: public key %d is a %T, not an RSA or P-256 key", c.ID, i, k)
		}
	}
	return nil
}

// authenticateClient returns the client the request authenticates as, or nil and why (a
// phrase starting with ": ", or empty); usedBasic says whether the request tried HTTP Basic.
// Methods: client_secret_basic, client_secret_post, private_key_jwt, and client_id alone for
// a public client (no Secret, no PublicKeys). TokenAuthPostOnly and TokenAuthBasicOnly allow
// only that secret method.
func (s *Server) authenticateClient(r *http.Request) (c *Client, usedBasic bool, why string) {
	m := s.misbehaviour()
	id, secret, usedBasic := r.BasicAuth()
	switch {
	case r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type"):
		if usedBasic {
			return nil, true, ": more than one authentication method"
		}
		if m.has(TokenAuthPostOnly) || m.has(TokenAuthBasicOnly) {
			return nil, false, ": private_key_jwt is not accepted"
		}
		c, why := s.assertedClient(r)
		return c, false, why
	case usedBasic:
		if m.has(TokenAuthPostOnly) {
			return nil, true, ": client_secret_basic is not accepted"
		}
		// RFC 6749 §2.3.1: the credentials are form-encoded before Basic encoding.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	case r.PostForm.Has("client_secret"):
		if m.has(TokenAuthBasicOnly) {
			return nil, false, ": client_secret_post is not accepted"
		}
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	default: // a public client names itself and has no secret
		id = r.PostForm.Get("client_id")
	}
	c = s.client(id)
	if c == nil || c.Secret == "" && len(c.PublicKeys) > 0 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return nil, usedBasic, ""
	}
	return c, usedBasic, ""
}

// audience is an aud claim: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// assertedClient checks an RFC 7523 client assertion: a JWT signed RS256 or ES256 by one of
// the client's PublicKeys, iss = sub = client_id, aud the token endpoint or the issuer, an
// exp at most an hour ahead, nbf (if any) passed, and a jti never used before.
func (s *Server) assertedClient(r *http.Request) (*Client, string) {
	if r.PostForm.Get("client_assertion_type") != assertionType {
		return nil, ": client_assertion_type must be " + assertionType
	}
	parts := strings.Split(r.PostForm.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return nil, ": client_assertion is not a JWT"
	}
	var h jwtHeader
	var c struct {
		Iss, Sub, Jti string
		Aud           audience
		Exp, Nbf      *float64
	}
	hb, err1 := b64.DecodeString(parts[0])
	cb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &h) != nil || json.Unmarshal(cb, &c) != nil {
		return nil, ": client_assertion is malformed"
	}
	client := s.client(c.Sub)
	now := s.now()
	switch {
	case client == nil || c.Iss != c.Sub:
		return nil, ": the assertion's iss and sub must both be the client_id"
	case r.PostForm.Has("client_id") && r.PostForm.Get("client_id") != client.ID:
		return nil, ": client_id is not the assertion's subject"
	case !verifyAssertion(h.Alg, parts[0]+"."+parts[1], sig, client.PublicKeys):
		return nil, ": the assertion's signature does not verify with the client's keys"
	case !slices.Contains(c.Aud, s.issuer()+"oauth/token") && !slices.Contains(c.Aud, s.issuer()):
		return nil, ": the assertion's aud is neither the token endpoint nor the issuer"
	case c.Exp == nil || !now.Before(time.Unix(int64(*c.Exp), 0)):
		return nil, ": the assertion has expired"
	case time.Unix(int64(*c.Exp), 0).After(now.Add(maxAssertionTTL)):
		return nil, ": the assertion is valid for too long (an hour at most)"
	case c.Nbf != nil && now.Before(time.Unix(int64(*c.Nbf), 0)):
		return nil, ": the assertion is not valid yet"
	case c.Jti == "":
		return nil, ": the assertion has no jti"
	}
	key := client.ID + "\x00" + c.Jti
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if _, used := s.usedJTIs[key]; used {
		return nil, ": the assertion's jti was already used"
	}
	s.usedJTIs[key] = time.Unix(int64(*c.Exp), 0)
	return client, ""
}

// verifyAssertion checks a JWS signature of input with alg (RS256 or ES256) against keys.
func verifyAssertion(alg, input string, sig []byte, keys []crypto.PublicKey) bool {
	sum := sha256.Sum256([]byte(input))
	for _, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			if alg == "RS256" && rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			if alg == "ES256" && len(sig) == 64 &&
				ecdsa.Verify(k, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return true
			}
		}
	}
	return false
}
