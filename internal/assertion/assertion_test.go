package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/jwk"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newSet(t testing.TB) *Set {
	t.Helper()
	s, err := NewSet(t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestASignedAssertionVerifiesWithTheKeysPublicHalf(t *testing.T) {
	t.Parallel()
	k := newSet(t).Newest()
	c := &Claims{Issuer: "https://app.example.com", Subject: "auth0|alice", Audience: "billing",
		IssuedAt: t0.Unix(), NotBefore: t0.Unix(), Expiry: t0.Add(5 * time.Minute).Unix(), ID: NewID(),
		Email: "alice@example.com", EmailVerified: true, Groups: []string{"staff"}, SessionID: "s1",
		Actor: &Actor{Subject: "auth0|admin", Email: "admin@example.com"}}
	tok, err := k.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}

	t.Run("the signature is ES256 over header.payload, r||s, checked with crypto/ecdsa alone", func(t *testing.T) {
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			t.Fatalf("signature: %d bytes, %v", len(sig), err)
		}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k.Public(), digest[:], r, s) {
			t.Fatal("the signature does not verify")
		}
		other := newSet(t).Newest()
		if ecdsa.Verify(other.Public(), digest[:], r, s) {
			t.Fatal("another key verifies it")
		}
	})
	t.Run("the header names ES256, JWT and the key's thumbprint", func(t *testing.T) {
		hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var hdr map[string]string
		if err := json.Unmarshal(hb, &hdr); err != nil {
			t.Fatal(err)
		}
		if hdr["alg"] != "ES256" || hdr["typ"] != "JWT" || hdr["kid"] != k.ID || len(hdr) != 3 {
			t.Fatalf("header %v", hdr)
		}
	})
	t.Run("the claims come back as signed, act included", func(t *testing.T) {
		var got Claims
		kid, err := Verify(tok, k.Public(), &got)
		if err != nil || kid != k.ID {
			t.Fatalf("verify: kid %q, %v", kid, err)
		}
		if got.Subject != c.Subject || got.Audience != "billing" || got.Actor == nil || got.Actor.Email != "admin@example.com" ||
			got.SessionID != "s1" || len(got.Groups) != 1 || got.Expiry != c.Expiry || got.ID == "" {
			t.Fatalf("claims %+v", got)
		}
	})
	t.Run("a changed payload does not verify", func(t *testing.T) {
		forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"auth0|mallory"}`)) + "." + parts[2]
		if _, err := Verify(forged, k.Public(), new(Claims)); err == nil {
			t.Fatal("a forged payload verified")
		}
	})
	t.Run("empty optional claims are left out", func(t *testing.T) {
		tok, err := k.Sign(&Claims{Issuer: "i", Subject: "s", Audience: "a", ID: "j"})
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		for _, name := range []string{"email", "email_verified", "name", "groups", "sid", "act"} {
			if strings.Contains(string(pb), `"`+name+`"`) {
				t.Errorf("%s present in %s", name, pb)
			}
		}
	})
}

func TestTheKidIsTheRFC7638Thumbprint(t *testing.T) {
	t.Parallel()
	k := newSet(t).Newest()
	if want, err := jwk.Thumbprint(k.Public()); err != nil || k.ID != want {
		t.Fatalf("a key's ID %s is not its thumbprint %s (%v)", k.ID, want, err)
	}
}

func TestTheJWKSPublishesPublicKeysOnly(t *testing.T) {
	t.Parallel()
	s := newSet(t)
	b, err := s.JWKS(t0)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	k := doc.Keys[0]
	want := map[string]string{"kty": "EC", "crv": "P-256", "kid": s.Newest().ID, "alg": "ES256", "use": "sig"}
	for name, v := range want {
		if k[name] != v {
			t.Errorf("%s = %q, want %q", name, k[name], v)
		}
	}
	if _, ok := k["d"]; ok || len(k) != 7 {
		t.Fatalf("the JWK has other members than the public ones: %v", k)
	}
	xb, _ := base64.RawURLEncoding.DecodeString(k["x"])
	yb, _ := base64.RawURLEncoding.DecodeString(k["y"])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, xb...), yb...))
	if err != nil || !pub.Equal(s.Newest().Public()) {
		t.Fatalf("x and y are not the public key: %v", err)
	}
}

func TestRotationAndRetirement(t *testing.T) {
	t.Parallel()
	every := 30 * 24 * time.Hour
	s := newSet(t)
	first := s.Current(t0)
	if s.RotationDue(t0.Add(every-time.Second), every) {
		t.Error("rotation due before the key's age")
	}
	if !s.RotationDue(t0.Add(every), every) {
		t.Error("rotation not due at the key's age")
	}
	if got := s.NextChange(t0, every); !got.Equal(t0.Add(every)) {
		t.Errorf("next change %v, want the rotation at %v", got, t0.Add(every))
	}

	at := t0.Add(every)
	r, err := s.Rotate(at)
	if err != nil {
		t.Fatal(err)
	}
	next := r.Newest()
	if next.ID == first.ID || !next.Retired.IsZero() {
		t.Fatal("the rotation did not make a new key")
	}
	if s.Current(at) != first || !first.Retired.IsZero() {
		t.Fatal("rotating changed the set it started from")
	}
	// The new key is published at once and signs only PublishAhead later: every instance and
	// every cached JWKS has it before an assertion names it.
	if n := len(r.Published(at)); n != 2 {
		t.Fatalf("%d keys published right after a rotation, want both", n)
	}
	if cur := r.Current(at.Add(PublishAhead - time.Second)); cur.ID != first.ID {
		t.Errorf("the new key signs %v after its creation, before PublishAhead", PublishAhead-time.Second)
	}
	switchAt := at.Add(PublishAhead)
	if cur := r.Current(switchAt); cur.ID != next.ID {
		t.Error("the new key does not sign once PublishAhead has passed")
	}
	if got := r.NextChange(at, every); !got.Equal(switchAt) {
		t.Errorf("next change %v, want the switch at %v", got, switchAt)
	}
	if got := r.NextChange(switchAt, every); !got.Equal(switchAt.Add(Retention)) {
		t.Errorf("next change %v, want the old key's end at %v", got, switchAt.Add(Retention))
	}
	if r.RotationDue(at, every) {
		t.Error("rotation due right after a rotation")
	}
	if n := len(r.Published(switchAt.Add(Retention - time.Second))); n != 2 {
		t.Errorf("the retired key went before every assertion it signed expired (%d published)", n)
	}
	if Retention <= MaxLifetime {
		t.Errorf("retention %v does not outlast the longest assertion %v", Retention, MaxLifetime)
	}
	if pub := r.Published(switchAt.Add(Retention)); len(pub) != 1 || pub[0].ID != next.ID {
		t.Error("the retired key is still published after its retention")
	}
	if _, pruned := r.Prune(switchAt.Add(Retention - time.Second)); pruned {
		t.Error("pruned a key within its retention")
	}
	p, pruned := r.Prune(switchAt.Add(Retention))
	if !pruned || len(p.Keys()) != 1 || p.Newest().ID != next.ID {
		t.Fatalf("pruning after retention left %d keys", len(p.Keys()))
	}
	// Even long unused, the current key itself is never pruned.
	if p, _ := p.Prune(at.Add(100 * every)); p.Current(at.Add(100*every)) == nil {
		t.Fatal("pruning removed the current key")
	}
	// Two rotations before the first switch: the keys take over in turn, none is left out.
	r2, err := r.Rotate(at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if cur := r2.Current(at.Add(time.Minute + PublishAhead)); cur.ID != r2.Newest().ID {
		t.Error("the second new key does not sign after its PublishAhead")
	}
	if n := len(r2.Published(at.Add(time.Minute))); n != 3 {
		t.Errorf("%d keys published, want all three", n)
	}
}

func TestTheStoredSetRoundTripsAndRefusesCorruption(t *testing.T) {
	t.Parallel()
	s, _ := newSet(t).Rotate(t0.Add(time.Hour))
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Keys()) != 2 || back.Newest().ID != s.Newest().ID || back.Keys()[1].Retired.IsZero() ||
		!back.Keys()[1].Created.Equal(t0) || !back.Newest().Active.Equal(s.Newest().Active) ||
		!back.Keys()[1].Active.Equal(t0) {
		t.Fatalf("round trip changed the set: %+v", back.Keys())
	}
	tok, _ := back.Newest().Sign(&Claims{Subject: "x"})
	if _, err := Verify(tok, s.Newest().Public(), new(Claims)); err != nil {
		t.Fatalf("the reloaded key does not sign as the original: %v", err)
	}

	var st storedSet
	_ = json.Unmarshal(b, &st)
	mutate := func(f func(*storedSet)) []byte {
		c := st
		c.Keys = append([]storedKey(nil), st.Keys...)
		f(&c)
		out, _ := json.Marshal(c)
		return out
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not JSON", []byte("{\"format\":1,\"keys\":[")},
		{"JSON of another shape", []byte(`["a"]`)},
		{"another format", mutate(func(s *storedSet) { s.Format = 2 })},
		{"no keys", mutate(func(s *storedSet) { s.Keys = nil })},
		{"a scalar that is not base64url", mutate(func(s *storedSet) { s.Keys[0].D = "***" })},
		{"a short scalar", mutate(func(s *storedSet) { s.Keys[0].D = "AAAA" })},
		{"a zero scalar", mutate(func(s *storedSet) { s.Keys[0].D = base64.RawURLEncoding.EncodeToString(make([]byte, 32)) })},
		{"a scalar past the group order", mutate(func(s *storedSet) {
			s.Keys[0].D = base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("\xff", 32)))
		})},
		{"a kid that is not the key's", mutate(func(s *storedSet) { s.Keys[0].Kid = s.Keys[1].Kid })},
		{"the newest key retired", mutate(func(s *storedSet) { s.Keys[0].Retired = s.Keys[0].Created })},
	} {
		t.Run("a stored set that is "+tc.name+" is an error", func(t *testing.T) {
			set, err := Parse(tc.data)
			if err == nil || set != nil {
				t.Fatalf("accepted: %v", set)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v is not ErrMalformed", err)
			}
			if strings.Contains(err.Error(), st.Keys[0].D) {
				t.Error("the error shows a private key")
			}
		})
	}
}

func TestAnAssertionNeverOutlivesItsSession(t *testing.T) {
	t.Parallel()
	if got := Expiry(t0, 5*time.Minute, t0.Add(time.Hour)); !got.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("expiry %v, want the lifetime's end", got)
	}
	if got := Expiry(t0, 5*time.Minute, t0.Add(time.Minute)); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("expiry %v, want the session's end", got)
	}
}

func BenchmarkSign(b *testing.B) {
	k := newSet(b).Newest()
	c := &Claims{Issuer: "https://app.example.com", Subject: "auth0|5f1c2d3e4f5a6b7c8d9e0f1a", Audience: "app",
		IssuedAt: t0.Unix(), NotBefore: t0.Unix(), Expiry: t0.Add(5 * time.Minute).Unix(), ID: NewID(),
		Email: "alice@example.com", EmailVerified: true, Name: "Alice Example", PreferredUsername: "alice",
		Groups: []string{"staff", "engineering"}, SessionID: "k3J9xQ2mN8pL5vR1tY7wZa"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

// Instances' clocks differ: a key made by one whose clock is behind the instance that made the
// previous key is still the newest. The set keeps its own order, and a rotation never dates its
// key before the newest one.
func TestTheNewestKeyIsTheSetsNotTheClocks(t *testing.T) {
	t.Parallel()
	s := newSet(t)                               // made at t0 by one instance
	r, err := s.Rotate(t0.Add(-3 * time.Second)) // rotated by another, 3 s behind
	if err != nil {
		t.Fatal(err)
	}
	if r.Newest().Created.Before(s.Newest().Created) {
		t.Errorf("the new key is dated %v, before the key it replaces (%v)", r.Newest().Created, s.Newest().Created)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("a set rotated by a clock behind does not parse: %v", err)
	}
	if back.Newest().ID != r.Newest().ID {
		t.Error("parsing changed which key is the newest")
	}
	// A stored set whose newest key is dated before an older one (written by an earlier
	// version with clocks apart) keeps its order too.
	var st storedSet
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st.Keys[0].Created = st.Keys[1].Created - 5
	st.Keys[0].Active = st.Keys[0].Created
	b, _ = json.Marshal(st)
	if back, err := Parse(b); err != nil || back.Newest().ID != st.Keys[0].Kid {
		t.Errorf("a newest key dated before an older one: %v", err)
	}
}
