package session

import (
	"encoding/binary"
	"errors"
	"time"
)

// Session is what a signed-in browser carries, sealed, in its session cookie. It holds only
// what the headers, placeholders, refresh and logout need.
type Session struct {
	ID                string
	Subject           string
	Email             string
	EmailVerified     bool
	Name              string
	PreferredUsername string
	Groups            []string
	// Claims holds the claims kept for headers and placeholders, rendered as strings.
	Claims []Claim
	// RuleClaims is a JSON object of the claims the authorization rules read, as the
	// provider sent them, so that every request can be decided on them.
	RuleClaims string
	// Provider names the provider and client that issued the session: only handlers
	// configured for them accept it.
	Provider string
	// SID is the provider's session (the ID token's sid), for Back-Channel Logout.
	SID string

	Impersonated      bool
	ImpersonatorID    string
	ImpersonatorEmail string
	// ImpersonatorEmailVerified: the provider (or the operator) vouches for ImpersonatorEmail.
	ImpersonatorEmailVerified bool

	AccessToken string
	// TokenAudience is the audience the access token was verified for; empty means the token
	// is userinfo-only and is never forwarded upstream.
	TokenAudience string
	RefreshToken  string
	IDToken       string
	TokenExpiry   time.Time
	// Scopes are the scopes granted with the tokens, space-separated as OAuth sends them.
	Scopes string

	Created  time.Time
	Expires  time.Time
	LastSeen time.Time
}

// Claim is one kept claim: a name and its value rendered as a header value.
type Claim struct {
	Name, Value string
}

// ClaimValue returns the kept claim called name.
func (s *Session) ClaimValue(name string) (string, bool) {
	for _, c := range s.Claims {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// The session's binary form: a format byte, then fields in a fixed order. Strings are
// uvarint-length-prefixed; decoding slices one string so each field costs no allocation.
// Format 3 added Scopes at the end; format 2 (without them) still opens, so sessions issued
// before an upgrade live on.
const (
	sessionFormat         = 3
	sessionFormatNoScopes = 2
)

var errSessionMalformed = errors.New("session is malformed")

// Marshal encodes the session in its binary form.
func (s *Session) Marshal() []byte {
	var b []byte
	b = append(b, sessionFormat)
	for _, v := range []string{s.ID, s.Subject, s.Email, s.Name, s.PreferredUsername,
		s.ImpersonatorID, s.ImpersonatorEmail, s.AccessToken, s.TokenAudience, s.RefreshToken, s.IDToken} {
		b = AppendString(b, v)
	}
	var flags byte
	if s.EmailVerified {
		flags |= 1
	}
	if s.Impersonated {
		flags |= 2
	}
	if s.ImpersonatorEmailVerified {
		flags |= 4
	}
	b = append(b, flags)
	for _, t := range []time.Time{s.TokenExpiry, s.Created, s.Expires, s.LastSeen} {
		b = binary.AppendVarint(b, unixOrZero(t))
	}
	b = binary.AppendUvarint(b, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		b = AppendString(b, g)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Claims)))
	for _, c := range s.Claims {
		b = AppendString(b, c.Name)
		b = AppendString(b, c.Value)
	}
	b = AppendString(b, s.RuleClaims)
	b = AppendString(b, s.Provider)
	b = AppendString(b, s.SID)
	return AppendString(b, s.Scopes)
}

// Unmarshal decodes the binary form, refusing anything malformed.
func (s *Session) Unmarshal(b []byte) error {
	if len(b) == 0 || b[0] != sessionFormat && b[0] != sessionFormatNoScopes {
		return errSessionMalformed
	}
	d := Decoder{s: string(b[1:])}
	for _, p := range []*string{&s.ID, &s.Subject, &s.Email, &s.Name, &s.PreferredUsername,
		&s.ImpersonatorID, &s.ImpersonatorEmail, &s.AccessToken, &s.TokenAudience, &s.RefreshToken, &s.IDToken} {
		*p = d.Text()
	}
	flags := d.byte()
	s.EmailVerified = flags&1 != 0
	s.Impersonated = flags&2 != 0
	s.ImpersonatorEmailVerified = flags&4 != 0
	for _, p := range []*time.Time{&s.TokenExpiry, &s.Created, &s.Expires, &s.LastSeen} {
		*p = timeOrZero(d.Varint())
	}
	if n := d.count(); n > 0 {
		s.Groups = make([]string, n)
		for i := range s.Groups {
			s.Groups[i] = d.Text()
		}
	}
	if n := d.count(); n > 0 {
		s.Claims = make([]Claim, n)
		for i := range s.Claims {
			s.Claims[i] = Claim{Name: d.Text(), Value: d.Text()}
		}
	}
	s.RuleClaims = d.Text()
	s.Provider = d.Text()
	s.SID = d.Text()
	if b[0] == sessionFormat {
		s.Scopes = d.Text()
	}
	if d.err || d.s != "" || s.ID == "" || s.Subject == "" {
		return errSessionMalformed
	}
	return nil
}

// AppendString appends s, length-prefixed.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(u int64) time.Time {
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(u, 0)
}

// NewDecoder reads b, which must not change while the decoder is in use.
func NewDecoder(b []byte) *Decoder { return &Decoder{s: string(b)} }

// Rest is what is left to read.
func (d *Decoder) Rest() string { return d.s }

// Failed reports whether a read failed.
func (d *Decoder) Failed() bool { return d.err }

// Decoder reads the binary form; after the first error every read returns a zero value.
type Decoder struct {
	s   string
	err bool
}

func (d *Decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := uvarintString(d.s)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.s = d.s[n:]
	return v
}

func (d *Decoder) Varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *Decoder) Text() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.s)) {
		d.err = true
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

func (d *Decoder) byte() byte {
	if d.err || d.s == "" {
		d.err = true
		return 0
	}
	v := d.s[0]
	d.s = d.s[1:]
	return v
}

// count reads a list length, refusing one longer than the bytes left could hold.
func (d *Decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.err = true
		return 0
	}
	return int(n)
}

// uvarintString is binary.Uvarint over a string, to decode without copying.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}
