package caddymodule

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// A MAC token is a value the module mints and can later tell as its own without keeping
// anything: the login state, and the signed impersonation state.
//
//	base64url( issued unix seconds (8) | random (12) | bound data (n) | HMAC-SHA256(key, all before)[:16] )
const (
	macTokenRandom = 12
	macTokenTag    = 16
)

func macTokenLen(boundLen int) int {
	return base64.RawURLEncoding.EncodedLen(8 + macTokenRandom + boundLen + macTokenTag)
}

// mintMACToken returns a token issued at now carrying bound, and its random part.
func mintMACToken(key []byte, now time.Time, bound []byte) (token string, random []byte) {
	raw := make([]byte, 8+macTokenRandom, 8+macTokenRandom+len(bound)+macTokenTag)
	binary.BigEndian.PutUint64(raw[:8], uint64(now.Unix()))
	_, _ = rand.Read(raw[8:])
	raw = append(raw, bound...)
	m := hmac.New(sha256.New, key)
	m.Write(raw)
	raw = m.Sum(raw)[:len(raw)+macTokenTag]
	return base64.RawURLEncoding.EncodeToString(raw), raw[8 : 8+macTokenRandom]
}

// openMACToken checks a token minted with one of keys and boundLen bytes of bound data. Only
// the canonical spelling opens, so a token remembered as used cannot come back spelled otherwise.
func openMACToken(keys [][]byte, token string, boundLen int) (issued time.Time, random, bound []byte, ok bool) {
	if len(token) != macTokenLen(boundLen) {
		return time.Time{}, nil, nil, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	body := len(raw) - macTokenTag
	if err != nil || body != 8+macTokenRandom+boundLen {
		return time.Time{}, nil, nil, false
	}
	for _, key := range keys {
		m := hmac.New(sha256.New, key)
		m.Write(raw[:body])
		if hmac.Equal(m.Sum(nil)[:macTokenTag], raw[body:]) {
			return time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0), raw[8 : 8+macTokenRandom], raw[8+macTokenRandom : body], true
		}
	}
	return time.Time{}, nil, nil, false
}
