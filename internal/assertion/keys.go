// Package assertion signs the identity assertion: a short-lived ES256 JWT that tells an
// application who the user is, and who impersonates them. It holds what needs neither HTTP nor
// Caddy: the stored key set and its format, rotation and retirement decisions, ES256 signing,
// and the public keys as a JWKS.
package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/jwk"
)

const (
	// MaxLifetime is the longest an assertion may live.
	MaxLifetime = time.Hour
	// Retention is how long a retired key stays published: every assertion it signed has
	// expired by then, including one signed by an instance that had not yet seen the rotation.
	Retention = MaxLifetime + 10*time.Minute
	// PublishAhead is how long a new key is published before it signs, so that every instance
	// publishes it (they reread the set every 30 s) and a JWKS cached by an application (for
	// its max-age of 30 s) has it before any assertion names it.
	PublishAhead = 2 * time.Minute
)

// Key is one ES256 (P-256) signing key.
type Key struct {
	// ID is the key's RFC 7638 thumbprint, the kid of its JWK and of what it signs.
	ID      string
	Created time.Time
	// Active is when it starts signing: at once for the first key, PublishAhead after its
	// creation for the next.
	Active time.Time
	// Retired is when a newer key takes over from it; zero for the newest key.
	Retired time.Time

	private *ecdsa.PrivateKey
	x, y    string // the public point's coordinates, base64url
	header  string // the JWS header it signs with, base64url
}

// NewKey creates a key.
func NewKey(now time.Time) (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a P-256 key: %w", err)
	}
	now = now.Truncate(time.Second)
	return newKey(priv, now, now, time.Time{})
}

func newKey(priv *ecdsa.PrivateKey, created, active, retired time.Time) (*Key, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil || len(pub) != 65 || pub[0] != 4 {
		return nil, errors.New("not a P-256 key")
	}
	k := &Key{Created: created, Active: active, Retired: retired, private: priv,
		x: base64.RawURLEncoding.EncodeToString(pub[1:33]),
		y: base64.RawURLEncoding.EncodeToString(pub[33:])}
	if k.ID, err = jwk.Thumbprint(&priv.PublicKey); err != nil {
		return nil, err
	}
	k.header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"` + k.ID + `","typ":"JWT"}`))
	return k, nil
}

// Public is the key's public half.
func (k *Key) Public() *ecdsa.PublicKey { return &k.private.PublicKey }

// JWK is a public key as RFC 7517 writes it.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWK is the key's public half as a JWK.
func (k *Key) JWK() JWK {
	return JWK{Kty: "EC", Crv: "P-256", X: k.x, Y: k.y, Kid: k.ID, Alg: "ES256", Use: "sig"}
}

// Set is the key set every instance sharing a storage signs with. A Set is never modified:
// Rotate and Prune return a new one, so a Set can be shared without locks.
type Set struct {
	keys []*Key // newest first
}

// NewSet is a set of one new key.
func NewSet(now time.Time) (*Set, error) {
	k, err := NewKey(now)
	if err != nil {
		return nil, err
	}
	return &Set{keys: []*Key{k}}, nil
}

// Keys are the set's keys, newest first.
func (s *Set) Keys() []*Key { return slices.Clone(s.keys) }

// Current is the key that signs at now: the newest one active by then.
func (s *Set) Current(now time.Time) *Key {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	for _, k := range s.keys {
		if !now.Before(k.Active) {
			return k
		}
	}
	return s.keys[len(s.keys)-1]
}

// Newest is the set's newest key: the one signing, or about to.
func (s *Set) Newest() *Key {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	return s.keys[0]
}

// RotationDue reports whether the newest key is older than every, or there is none.
func (s *Set) RotationDue(now time.Time, every time.Duration) bool {
	k := s.Newest()
	return k == nil || !now.Before(k.Created.Add(every))
}

// Rotate returns the set with a new key, published now and signing PublishAhead later, when
// the newest key until then retires.
func (s *Set) Rotate(now time.Time) (*Set, error) {
	if newest := s.Newest(); newest != nil && now.Before(newest.Created) {
		now = newest.Created // a clock behind the instance that made the newest key
	}
	k, err := NewKey(now)
	if err != nil {
		return nil, err
	}
	k.Active = k.Created.Add(PublishAhead)
	next := &Set{keys: make([]*Key, 0, len(s.keys)+1)}
	next.keys = append(next.keys, k)
	for i, old := range s.keys {
		if i == 0 && old.Retired.IsZero() {
			retired := *old
			retired.Retired = k.Active
			old = &retired
		}
		next.keys = append(next.keys, old)
	}
	return next, nil
}

// gone reports whether a retired key is past its retention.
func (k *Key) gone(now time.Time) bool {
	return !k.Retired.IsZero() && !now.Before(k.Retired.Add(Retention))
}

// Prune returns the set without the retired keys past their retention, and whether any went.
func (s *Set) Prune(now time.Time) (*Set, bool) {
	kept := &Set{}
	for i, k := range s.keys {
		if i == 0 || !k.gone(now) {
			kept.keys = append(kept.keys, k)
		}
	}
	return kept, len(kept.keys) != len(s.keys)
}

// NextChange is when RotationDue, Prune or Current will next change their answer.
func (s *Set) NextChange(now time.Time, every time.Duration) time.Time {
	newest := s.Newest()
	if newest == nil {
		return now
	}
	next := newest.Created.Add(every)
	for _, k := range s.keys {
		if now.Before(k.Active) && k.Active.Before(next) {
			next = k.Active
		}
		if !k.Retired.IsZero() && k.Retired.Add(Retention).Before(next) {
			next = k.Retired.Add(Retention)
		}
	}
	return next
}

// Published are the keys an application may see assertions of at now: the current one and
// those retired within their retention.
func (s *Set) Published(now time.Time) []*Key {
	var pub []*Key
	for i, k := range s.keys {
		if i == 0 || !k.gone(now) {
			pub = append(pub, k)
		}
	}
	return pub
}

// JWKS is the published keys as a JSON Web Key Set.
func (s *Set) JWKS(now time.Time) ([]byte, error) {
	var doc struct {
		Keys []JWK `json:"keys"`
	}
	doc.Keys = []JWK{}
	for _, k := range s.Published(now) {
		doc.Keys = append(doc.Keys, k.JWK())
	}
	return json.Marshal(doc)
}

// The stored form: the private scalars, so that every instance signs alike.
const storedFormat = 1

type storedSet struct {
	Format int         `json:"format"`
	Keys   []storedKey `json:"keys"`
}

type storedKey struct {
	Kid     string `json:"kid"`
	Created int64  `json:"created"`
	Active  int64  `json:"active,omitempty"` // absent: created
	Retired int64  `json:"retired,omitempty"`
	D       string `json:"d"` // the private scalar, base64url
}

// Marshal encodes the set, private keys included, for storage.
func (s *Set) Marshal() ([]byte, error) {
	st := storedSet{Format: storedFormat}
	for _, k := range s.keys {
		d, err := k.private.Bytes()
		if err != nil {
			return nil, fmt.Errorf("encoding key %s: %w", k.ID, err)
		}
		sk := storedKey{Kid: k.ID, Created: k.Created.Unix(), Active: k.Active.Unix(), D: base64.RawURLEncoding.EncodeToString(d)}
		if !k.Retired.IsZero() {
			sk.Retired = k.Retired.Unix()
		}
		st.Keys = append(st.Keys, sk)
	}
	return json.Marshal(st)
}

// ErrMalformed is returned for a stored key set that does not decode, or whose keys are not
// what they say.
var ErrMalformed = errors.New("malformed stored key set")

// Parse decodes a stored key set, checking every key.
func Parse(b []byte) (*Set, error) {
	var st storedSet
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if st.Format != storedFormat {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrMalformed, st.Format, storedFormat)
	}
	if len(st.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrMalformed)
	}
	s := &Set{}
	for i, sk := range st.Keys {
		d, err := base64.RawURLEncoding.DecodeString(sk.D)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("%w: key %d: bad private scalar", ErrMalformed, i)
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: bad private scalar", ErrMalformed, i)
		}
		var retired time.Time
		if sk.Retired != 0 {
			retired = time.Unix(sk.Retired, 0)
		}
		active := time.Unix(sk.Created, 0)
		if sk.Active != 0 {
			active = time.Unix(sk.Active, 0)
		}
		k, err := newKey(priv, time.Unix(sk.Created, 0), active, retired)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrMalformed, i, err)
		}
		if k.ID != sk.Kid {
			return nil, fmt.Errorf("%w: key %d is not the key its kid names", ErrMalformed, i)
		}
		s.keys = append(s.keys, k)
	}
	// Newest first, as Rotate writes them. The order is the set's own, not the keys' times:
	// instances' clocks differ, and a key made by one a second behind another is still the
	// newer one. The newest key is never retired.
	if !s.keys[0].Retired.IsZero() {
		return nil, fmt.Errorf("%w: the newest key is retired", ErrMalformed)
	}
	return s, nil
}
