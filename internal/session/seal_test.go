package session

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// Secrets of the unit tests: two, for rotation. Both are longer than MinSecretLen.
const (
	unitSecretOld = "unit-old-secret-0123456789abcdef-0123"
	unitSecretNew = "unit-new-secret-0123456789abcdef-4567"
)

// unitNow is the fixed clock of the unit tests; whole seconds, as the sealed expiry is.
var unitNow = time.Unix(1893456000, 0) // 2030-01-01T00:00:00Z

func unitSealer(tb testing.TB, secrets ...string) *Sealer {
	tb.Helper()
	s, err := NewSealer(secrets)
	if err != nil {
		tb.Fatalf("NewSealer: %v", err)
	}
	return s
}

// sealedRaw decodes a sealed value into its bytes, so tests can change one region of it.
func sealedRaw(t *testing.T, v string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("sealed value is not base64url: %v", err)
	}
	return raw
}

func TestSealThenOpenGivesBackThePlaintext(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	for _, tc := range []struct {
		name      string
		purpose   Purpose
		plaintext []byte
	}{
		{"an empty plaintext round-trips", PurposeSession, []byte{}},
		{"a short text round-trips", PurposeAttempt, []byte("hello")},
		{"binary with every byte value round-trips", PurposeConfirm, func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}()},
		{"a value spanning several cookie chunks round-trips", PurposeStash, bytes.Repeat([]byte("x"), 3*ChunkSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := s.Seal(tc.purpose, tc.plaintext, unitNow.Add(time.Hour))
			got, err := s.Open(tc.purpose, v, unitNow)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Errorf("open gave %q, want %q", got, tc.plaintext)
			}
			if want := base64.RawURLEncoding.EncodedLen(sealOverhead + len(tc.plaintext)); len(v) != want {
				t.Errorf("sealed length %d, want %d", len(v), want)
			}
		})
	}
}

func TestSealingTheSameValueTwiceGivesDifferentCiphertexts(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	a := s.Seal(PurposeSession, []byte("same"), unitNow.Add(time.Hour))
	b := s.Seal(PurposeSession, []byte("same"), unitNow.Add(time.Hour))
	if a == b {
		t.Fatalf("two seals of one plaintext are identical (%s): the nonce is not random", a)
	}
	if ra, rb := sealedRaw(t, a), sealedRaw(t, b); bytes.Equal(ra[sealHeaderSize:sealHeaderSize+sealNonceSize], rb[sealHeaderSize:sealHeaderSize+sealNonceSize]) {
		t.Errorf("two seals share the nonce %x", ra[sealHeaderSize:sealHeaderSize+sealNonceSize])
	}
}

func TestATamperedSealedValueIsRefused(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	v := s.Seal(PurposeSession, []byte("a session worth protecting"), unitNow.Add(time.Hour))
	raw := sealedRaw(t, v)
	tagStart := len(raw) - 16
	for _, region := range []struct {
		name       string
		start, end int
		want       error
	}{
		{"a flipped version byte is refused as malformed", 0, 1, errSealMalformed},
		{"a flipped key id byte is refused as an unknown key", 1, 5, errSealKey},
		{"a flipped expiry byte is refused as unauthentic", 5, sealHeaderSize, errSealOpen},
		{"a flipped nonce byte is refused as unauthentic", sealHeaderSize, sealHeaderSize + sealNonceSize, errSealOpen},
		{"a flipped ciphertext byte is refused as unauthentic", sealHeaderSize + sealNonceSize, tagStart, errSealOpen},
		{"a flipped tag byte is refused as unauthentic", tagStart, len(raw), errSealOpen},
	} {
		t.Run(region.name, func(t *testing.T) {
			if region.end <= region.start {
				t.Fatalf("empty region [%d,%d)", region.start, region.end)
			}
			for i := region.start; i < region.end; i++ {
				for _, bit := range []byte{0x01, 0x80} {
					mutated := bytes.Clone(raw)
					mutated[i] ^= bit
					got, err := s.Open(PurposeSession, base64.RawURLEncoding.EncodeToString(mutated), unitNow)
					if !errors.Is(err, region.want) || got != nil {
						t.Fatalf("byte %d ^ %#x: open = (%q, %v), want (nil, %v)", i, bit, got, err, region.want)
					}
				}
			}
		})
	}
}

func TestATruncatedSealedValueIsRefused(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	v := s.Seal(PurposeSession, []byte("truncate me"), unitNow.Add(time.Hour))
	for n := 0; n < len(v); n++ {
		got, err := s.Open(PurposeSession, v[:n], unitNow)
		if got != nil || !(errors.Is(err, errSealMalformed) || errors.Is(err, errSealOpen)) {
			t.Fatalf("the first %d of %d characters: open = (%q, %v), want (nil, malformed or unauthentic)", n, len(v), got, err)
		}
	}
	// Dropping the tag's last byte leaves valid base64 of a long enough value: it must fail
	// authentication, not slip through.
	raw := sealedRaw(t, v)
	if _, err := s.Open(PurposeSession, base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]), unitNow); !errors.Is(err, errSealOpen) {
		t.Errorf("value without the tag's last byte: err = %v, want %v", err, errSealOpen)
	}
}

func TestAValueSealedWithAnotherKeyIsRefused(t *testing.T) {
	a := unitSealer(t, unitSecretNew)
	b := unitSealer(t, unitSecretOld)
	v := a.Seal(PurposeSession, []byte("for a only"), unitNow.Add(time.Hour))
	if got, err := b.Open(PurposeSession, v, unitNow); !errors.Is(err, errSealKey) || got != nil {
		t.Fatalf("open with another secret = (%q, %v), want (nil, %v)", got, err, errSealKey)
	}
	// Even with a's key id forged into it, b's key does not authenticate a's ciphertext.
	raw := sealedRaw(t, v)
	copy(raw[1:5], b.keys[0].id[:])
	if got, err := b.Open(PurposeSession, base64.RawURLEncoding.EncodeToString(raw), unitNow); !errors.Is(err, errSealOpen) || got != nil {
		t.Fatalf("open with a forged key id = (%q, %v), want (nil, %v)", got, err, errSealOpen)
	}
}

func TestAValueOpensOnlyForThePurposeItWasSealedFor(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	for _, tc := range []struct {
		name           string
		sealed, opened Purpose
	}{
		{"an attempt does not open as a session", PurposeAttempt, PurposeSession},
		{"a session does not open as an attempt", PurposeSession, PurposeAttempt},
		{"a stash does not open as a session", PurposeStash, PurposeSession},
		{"a confirmation does not open as a session", PurposeConfirm, PurposeSession},
		{"a session does not open as a confirmation", PurposeSession, PurposeConfirm},
		{"a purpose does not open as its own prefix", "sessions", PurposeSession},
		{"a purpose does not open with a NUL appended", PurposeSession, PurposeSession + "\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := s.Seal(tc.sealed, []byte("payload"), unitNow.Add(time.Hour))
			if got, err := s.Open(tc.opened, v, unitNow); !errors.Is(err, errSealOpen) || got != nil {
				t.Fatalf("open as %q = (%q, %v), want (nil, %v)", tc.opened, got, err, errSealOpen)
			}
			if _, err := s.Open(tc.sealed, v, unitNow); err != nil {
				t.Fatalf("open as %q, its own purpose: %v", tc.sealed, err)
			}
		})
	}
}

func TestASealedValueExpiresAtItsExpiry(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	expires := unitNow.Add(time.Hour)
	v := s.Seal(PurposeSession, []byte("short-lived"), expires)
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"it opens when just sealed", unitNow, nil},
		{"it opens one second before its expiry", expires.Add(-time.Second), nil},
		{"it is refused at its expiry", expires, ErrExpired},
		{"it is refused a day later", expires.Add(24 * time.Hour), ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Open(PurposeSession, v, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("open at %v: err = %v, want %v", tc.now, err, tc.want)
			}
			if tc.want == nil && string(got) != "short-lived" {
				t.Errorf("open gave %q", got)
			}
			if tc.want != nil && got != nil {
				t.Errorf("an expired value gave its plaintext %q", got)
			}
		})
	}
}

func TestAnExpiredValueOpensOnlyToSayWhoseItWas(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	v := s.Seal(PurposeSession, []byte("whose"), unitNow.Add(-time.Hour))
	t.Run("Open refuses it", func(t *testing.T) {
		if got, err := s.Open(PurposeSession, v, unitNow); !errors.Is(err, ErrExpired) || got != nil {
			t.Fatalf("Open = %q, %v; want nil, ErrExpired", got, err)
		}
	})
	t.Run("OpenExpired gives its plaintext", func(t *testing.T) {
		if got, err := s.OpenExpired(PurposeSession, v); err != nil || string(got) != "whose" {
			t.Fatalf("OpenExpired = %q, %v", got, err)
		}
	})
	t.Run("OpenExpired still refuses another purpose and a tampered value", func(t *testing.T) {
		if _, err := s.OpenExpired(PurposeStash, v); err == nil {
			t.Errorf("opened for another purpose")
		}
		raw := sealedRaw(t, v)
		raw[len(raw)-1] ^= 1
		if _, err := s.OpenExpired(PurposeSession, base64.RawURLEncoding.EncodeToString(raw)); err == nil {
			t.Errorf("a tampered value opened")
		}
	})
}

func TestSessionSecretsRotate(t *testing.T) {
	old := unitSealer(t, unitSecretOld)
	rotated := unitSealer(t, unitSecretNew, unitSecretOld)
	newOnly := unitSealer(t, unitSecretNew)
	sealedByOld := old.Seal(PurposeSession, []byte("old cookie"), unitNow.Add(time.Hour))
	sealedByRotated := rotated.Seal(PurposeSession, []byte("new cookie"), unitNow.Add(time.Hour))

	t.Run("a value sealed with the old secret opens under new and old", func(t *testing.T) {
		got, err := rotated.Open(PurposeSession, sealedByOld, unitNow)
		if err != nil || string(got) != "old cookie" {
			t.Fatalf("open = (%q, %v), want (old cookie, nil)", got, err)
		}
	})
	t.Run("the rotated Sealer seals with the new secret", func(t *testing.T) {
		got, err := newOnly.Open(PurposeSession, sealedByRotated, unitNow)
		if err != nil || string(got) != "new cookie" {
			t.Fatalf("new-only open = (%q, %v), want (new cookie, nil)", got, err)
		}
		if id := sealedRaw(t, sealedByRotated)[1:5]; !bytes.Equal(id, newOnly.keys[0].id[:]) {
			t.Errorf("key id %x, want the new secret's %x", id, newOnly.keys[0].id)
		}
	})
	t.Run("an old-only Sealer cannot open a value sealed with the new secret", func(t *testing.T) {
		if got, err := old.Open(PurposeSession, sealedByRotated, unitNow); !errors.Is(err, errSealKey) || got != nil {
			t.Fatalf("open = (%q, %v), want (nil, %v)", got, err, errSealKey)
		}
	})
	t.Run("the two secrets have different key ids", func(t *testing.T) {
		if rotated.keys[0].id == rotated.keys[1].id {
			t.Fatalf("both keys have id %x", rotated.keys[0].id)
		}
	})
}

func TestNewSealerRefusesShortSecrets(t *testing.T) {
	short := strings.Repeat("s", MinSecretLen-1)
	for _, tc := range []struct {
		name    string
		secrets []string
		want    string
	}{
		{"no secret at all is refused", nil, "no session secret"},
		{"an empty secret is refused", []string{""}, "session secret #1 is 0 bytes; at least 32 are required"},
		{"a 31-byte secret is refused", []string{short}, "session secret #1 is 31 bytes; at least 32 are required"},
		{"a short second secret is refused", []string{unitSecretNew, short}, "session secret #2 is 31 bytes; at least 32 are required"},
		{"a 32-byte secret is accepted", []string{strings.Repeat("s", MinSecretLen)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSealer(tc.secrets)
			if tc.want == "" {
				if err != nil || s == nil || len(s.keys) != len(tc.secrets) {
					t.Fatalf("NewSealer = (%v, %v), want a Sealer with %d keys", s, err, len(tc.secrets))
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if s != nil {
				t.Errorf("a Sealer was returned with the error")
			}
			if short != "" && strings.Contains(err.Error(), short) {
				t.Errorf("the error echoes the secret: %v", err)
			}
		})
	}
}

func TestMalformedSealedValuesAreRefused(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	valid := s.Seal(PurposeSession, []byte("payload"), unitNow.Add(time.Hour))
	raw := sealedRaw(t, valid)
	for _, tc := range []struct {
		name  string
		value string
	}{
		{"an empty value is malformed", ""},
		{"punctuation is not base64url", "!!!!not-base64!!!!"},
		{"standard base64 characters are not base64url", strings.Replace(valid, valid[10:11], "+", 1)},
		{"padding is not raw base64url", valid + "=="},
		{"a space inside is not base64url", valid[:20] + " " + valid[20:]},
		{"a quoted value is not base64url", `"` + valid + `"`},
		{"a value shorter than the overhead is malformed", base64.RawURLEncoding.EncodeToString(raw[:sealOverhead-1])},
		{"an unknown version is malformed", base64.RawURLEncoding.EncodeToString(append([]byte{2}, raw[1:]...))},
		{"a value over the size bound is malformed", strings.Repeat("A", maxSealedLen+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := s.Open(PurposeSession, tc.value, unitNow); !errors.Is(err, errSealMalformed) || got != nil {
				t.Fatalf("open = (%q, %v), want (nil, %v)", got, err, errSealMalformed)
			}
		})
	}
}

func TestAnOversizedSealedValueIsRefusedEvenWhenAuthentic(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	v := s.Seal(PurposeSession, bytes.Repeat([]byte("z"), maxSealedLen), unitNow.Add(time.Hour))
	if len(v) <= maxSealedLen {
		t.Fatalf("sealed length %d is not over the bound %d", len(v), maxSealedLen)
	}
	if got, err := s.Open(PurposeSession, v, unitNow); !errors.Is(err, errSealMalformed) || got != nil {
		t.Fatalf("open = (%d bytes, %v), want (nil, %v)", len(got), err, errSealMalformed)
	}
}

// FuzzOpen feeds arbitrary values and purposes to open: it must never panic, and nothing but
// the values sealed as seeds may ever open.
func FuzzOpen(f *testing.F) {
	s := unitSealer(f, unitSecretNew, unitSecretOld)
	plain := fullSession().Marshal()
	for _, p := range []Purpose{PurposeSession, PurposeAttempt, PurposeStash, PurposeConfirm} {
		f.Add(string(p), s.Seal(p, plain, unitNow.Add(time.Hour)))
	}
	f.Add(string(PurposeSession), unitSealer(f, unitSecretOld).Seal(PurposeSession, plain, unitNow.Add(time.Hour)))
	f.Add(string(PurposeSession), s.Seal(PurposeSession, plain, unitNow.Add(-time.Hour)))
	f.Add(string(PurposeSession), "")
	f.Add(string(PurposeSession), "AQ")
	f.Add("", strings.Repeat("A", sealOverhead*2))
	f.Fuzz(func(t *testing.T, purpose, value string) {
		got, err := s.Open(Purpose(purpose), value, unitNow)
		if err != nil {
			if got != nil {
				t.Fatalf("open returned %d bytes with the error %v", len(got), err)
			}
			return
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("a value that was never sealed opened: %q", got)
		}
	})
}

// BenchmarkSealAndOpen is a typical session's cookie value made and read back: sealing at
// sign-in (and renewal), opening on every request.
func BenchmarkSealAndOpen(b *testing.B) {
	s, err := NewSealer([]string{strings.Repeat("k", 48)})
	if err != nil {
		b.Fatal(err)
	}
	plain := fullSession().Marshal()
	exp := time.Unix(1893499200, 0)
	now := time.Unix(1893456000, 0)
	sealed := s.Seal(PurposeSession, plain, exp)
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.Seal(PurposeSession, plain, exp)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.OpenFunc(PurposeSession, sealed, now, func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
