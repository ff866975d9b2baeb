package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A sealed value is, before base64url:
//
//	version (1) | key id (4) | expiry unix seconds (8) | nonce (12) | AES-256-GCM ciphertext and tag
//
// The version, key id, expiry and the purpose of the value (session, attempt, confirmation, ...)
// are authenticated as additional data, so a value sealed for one purpose never opens as
// another and its expiry cannot be moved.
const (
	sealVersion    = 1
	sealHeaderSize = 1 + 4 + 8
	sealNonceSize  = 12
	sealOverhead   = sealHeaderSize + sealNonceSize + 16
	// MinSecretLen is the shortest session secret accepted: 32 bytes of key material.
	MinSecretLen = 32
)

// Purpose separates sealed values: one sealed for a purpose never opens as another.
type Purpose string

// The purposes of the module's sealed values.
const (
	PurposeSession Purpose = "session" // the session cookie
	PurposeStash   Purpose = "stash"   // an impersonator's own session, kept aside
	PurposeAttempt Purpose = "attempt" // a login attempt's cookie
	PurposeConfirm Purpose = "confirm" // an impersonated session awaiting confirmation
	PurposeTicket  Purpose = "ticket"  // a server-side session's cookie: its ID
)

var (
	errSealMalformed = errors.New("sealed value is malformed")
	errSealKey       = errors.New("sealed value was made with an unknown key")
	errSealOpen      = errors.New("sealed value does not authenticate")
	ErrExpired       = errors.New("sealed value has expired")
)

type sealKey struct {
	id   [4]byte
	aead cipher.AEAD
}

// Sealer seals with its first key and opens with any of them, so secrets can be rotated:
// put the new secret first and keep the old one until the longest-lived cookie has expired.
type Sealer struct {
	keys []sealKey
}

func NewSealer(secrets []string) (*Sealer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no session secret")
	}
	s := &Sealer{}
	for i, secret := range secrets {
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("session secret #%d is %d bytes; at least %d are required", i+1, len(secret), MinSecretLen)
		}
		key := DeriveKey(secret, "caddy-oidc-auth seal v1")
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		var k sealKey
		id := sha256.Sum256(append([]byte("key id:"), key...))
		copy(k.id[:], id[:4])
		k.aead = aead
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// Seal encrypts plaintext for purpose, valid until expires, and returns it base64url-encoded.
func (s *Sealer) Seal(purpose Purpose, plaintext []byte, expires time.Time) string {
	k := s.keys[0]
	buf := make([]byte, sealHeaderSize+sealNonceSize, sealOverhead+len(plaintext))
	buf[0] = sealVersion
	copy(buf[1:5], k.id[:])
	binary.BigEndian.PutUint64(buf[5:13], uint64(expires.Unix()))
	nonce := buf[sealHeaderSize : sealHeaderSize+sealNonceSize]
	_, _ = rand.Read(nonce)
	buf = k.aead.Seal(buf, nonce, plaintext, additionalData(purpose, buf[:sealHeaderSize]))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Open reverses Seal. The returned plaintext is freshly allocated and owned by the caller.
func (s *Sealer) Open(purpose Purpose, value string, now time.Time) ([]byte, error) {
	return s.openCopy(purpose, value, now, true)
}

// OpenExpired opens an authentic value whatever its expiry, so that the end of what it held
// can be recorded with whose it was. What it returns must never be accepted as valid.
func (s *Sealer) OpenExpired(purpose Purpose, value string) ([]byte, error) {
	return s.openCopy(purpose, value, time.Time{}, false)
}

// openCopy is open with the plaintext copied out of the pooled buffer.
func (s *Sealer) openCopy(purpose Purpose, value string, now time.Time, checkExpiry bool) ([]byte, error) {
	var plain []byte
	err := s.open(purpose, value, now, checkExpiry, func(p []byte) error {
		plain = append([]byte(nil), p...)
		return nil
	})
	return plain, err
}

// OpenFunc reverses Seal and hands the plaintext to f, which must not keep it: it lives in a
// buffer reused once f returns. It is Open without allocating, for the authenticated path.
func (s *Sealer) OpenFunc(purpose Purpose, value string, now time.Time, f func(plain []byte) error) error {
	return s.open(purpose, value, now, true, f)
}

// open authenticates and decrypts value into a pooled buffer, checks its expiry against now
// when checkExpiry is set, and hands the plaintext to f.
func (s *Sealer) open(purpose Purpose, value string, now time.Time, checkExpiry bool, f func(plain []byte) error) error {
	if len(value) > maxSealedLen {
		return errSealMalformed
	}
	bp := openBuffers.Get().(*[]byte)
	defer openBuffers.Put(bp)
	// The buffer holds the decoded value, the additional data, and the encoded value copied
	// (Decode takes bytes; converting the string would allocate).
	size := base64.RawURLEncoding.DecodedLen(len(value))
	adLen := len(purpose) + 1 + sealHeaderSize
	need := size + adLen + len(value)
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	buf := (*bp)[:need]
	defer clear(buf) // the plaintext (tokens) does not linger in the pool
	src := buf[size+adLen:]
	copy(src, value)
	n, err := base64.RawURLEncoding.Decode(buf[:size], src)
	if err != nil || n < sealOverhead || buf[0] != sealVersion {
		return errSealMalformed
	}
	raw, ad := buf[:n], buf[size:size]
	var aead cipher.AEAD
	for i := range s.keys {
		if [4]byte(raw[1:5]) == s.keys[i].id {
			aead = s.keys[i].aead
			break
		}
	}
	if aead == nil {
		return errSealKey
	}
	ad = append(append(append(ad, purpose...), 0), raw[:sealHeaderSize]...)
	nonce := raw[sealHeaderSize : sealHeaderSize+sealNonceSize]
	plain, err := aead.Open(raw[sealHeaderSize+sealNonceSize:sealHeaderSize+sealNonceSize], nonce,
		raw[sealHeaderSize+sealNonceSize:], ad)
	if err != nil {
		return errSealOpen
	}
	if exp := int64(binary.BigEndian.Uint64(raw[5:13])); checkExpiry && now.Unix() >= exp {
		return ErrExpired
	}
	return f(plain)
}

// openBuffers are OpenFunc's buffers; one grows to the largest value it opened.
var openBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxSealedLen bounds what open will even decode: a session split over the maximum number of
// cookie chunks, plus slack.
const maxSealedLen = MaxChunks*ChunkSize + 64

func additionalData(purpose Purpose, header []byte) []byte {
	ad := make([]byte, 0, len(purpose)+1+len(header))
	ad = append(ad, purpose...)
	ad = append(ad, 0)
	return append(ad, header...)
}
