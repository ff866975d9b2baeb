package session

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// fullSession has every field set, so a round trip that drops one is seen.
func fullSession() *Session {
	return &Session{
		ID:                        "sess-0123456789",
		Subject:                   "auth0|alice",
		Email:                     "alice@example.com",
		EmailVerified:             true,
		Name:                      "Alice Ängström",
		PreferredUsername:         "alice",
		Groups:                    []string{"staff", "admins", ""},
		Claims:                    []Claim{{"department", "engineering"}, {"roles", "a,b"}, {"https://example.com/tier", "gold"}},
		Impersonated:              true,
		ImpersonatorID:            "auth0|admin",
		ImpersonatorEmail:         "admin@example.com",
		ImpersonatorEmailVerified: true,
		AccessToken:               "access-token-value",
		TokenAudience:             "https://api.example.com",
		RefreshToken:              "refresh-token-value",
		IDToken:                   "header.payload.signature",
		TokenExpiry:               time.Unix(1893459600, 0),
		Created:                   time.Unix(1893456000, 0),
		Expires:                   time.Unix(1893499200, 0),
		LastSeen:                  time.Unix(1893457000, 0),
		RuleClaims:                `{"roles":["staff"]}`,
		Provider:                  "op-and-client",
		SID:                       "op-session-1",
		Scopes:                    "openid read:reports",
	}
}

func TestTheFullSessionFixtureSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(fullSession()).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			t.Errorf("fullSession leaves %s unset, so its round trip is not tested", v.Type().Field(i).Name)
		}
	}
}

func TestASessionSurvivesMarshalAndUnmarshal(t *testing.T) {
	notImpersonated := fullSession()
	notImpersonated.Impersonated, notImpersonated.ImpersonatorID, notImpersonated.ImpersonatorEmail = false, "", ""
	notImpersonated.EmailVerified = false
	for _, tc := range []struct {
		name string
		s    *Session
	}{
		{"a session with every field round-trips", fullSession()},
		{"a session that is not impersonated round-trips", notImpersonated},
		{"a minimal session with zero times and no lists round-trips", &Session{ID: "i", Subject: "s"}},
		{"a session with a time before 1970 round-trips", &Session{ID: "i", Subject: "s", Created: time.Unix(-86400, 0)}},
		{"a session with long values round-trips", &Session{ID: "i", Subject: string(bytes.Repeat([]byte("s"), 300)),
			Groups: []string{string(bytes.Repeat([]byte("g"), 200))}, Claims: []Claim{{"", ""}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Session
			if err := got.Unmarshal(tc.s.Marshal()); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(&got, tc.s) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, *tc.s)
			}
		})
	}
}

func TestASessionSurvivesTheSealedCookieCodec(t *testing.T) {
	s := unitSealer(t, unitSecretNew)
	want := fullSession()
	v := s.Seal(PurposeSession, want.Marshal(), want.Expires)
	plain, err := s.Open(PurposeSession, v, want.Created)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var got Session
	if err := got.Unmarshal(plain); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("sealed round trip\n got %+v\nwant %+v", got, *want)
	}
	if _, err := s.Open(PurposeSession, v, want.Expires); err == nil {
		t.Errorf("the sealed session opened at its own expiry")
	}
}

// A session sealed before scopes were kept (format 2: no Scopes at the end) still opens,
// so an upgrade signs no one out.
func TestSessionOfTheFormatBeforeScopesOpens(t *testing.T) {
	want := fullSession()
	want.Scopes = ""
	b := want.Marshal()
	old := append([]byte{sessionFormatNoScopes}, b[1:len(b)-1]...) // without the empty Scopes
	var got Session
	if err := got.Unmarshal(old); err != nil {
		t.Fatalf("a format-2 session does not open: %v", err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("format-2 session = %+v, want %+v", got, *want)
	}
	var trailing Session
	if err := trailing.Unmarshal(append(old, 0)); err == nil {
		t.Error("a format-2 session with a trailing byte opened")
	}
}

func TestSessionUnmarshalRefusesGarbage(t *testing.T) {
	valid := fullSession().Marshal()
	maxUvarint := binary.AppendUvarint(nil, ^uint64(0))
	withoutID := (&Session{Subject: "s"}).Marshal()
	withoutSubject := (&Session{ID: "i"}).Marshal()
	// A minimal session whose group count claims far more entries than there are bytes (it
	// ends with the group count, the claim count and four empty strings).
	hugeGroups := (&Session{ID: "i", Subject: "s"}).Marshal()
	hugeGroups = append(hugeGroups[:len(hugeGroups)-6], maxUvarint...)
	hugeGroups = append(hugeGroups, 0, 0, 0, 0, 0)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil is refused", nil},
		{"an empty slice is refused", []byte{}},
		{"the format byte alone is refused", []byte{sessionFormat}},
		{"an unknown format is refused", append([]byte{sessionFormat + 1}, valid[1:]...)},
		{"format zero is refused", append([]byte{0}, valid[1:]...)},
		{"one extra byte is refused", append(bytes.Clone(valid), 0)},
		{"a trailing session is refused", append(bytes.Clone(valid), valid...)},
		{"a string length past the end is refused", []byte{sessionFormat, 0x7f, 'a'}},
		{"a string length of 2^64-1 is refused", append([]byte{sessionFormat}, maxUvarint...)},
		{"an overlong varint is refused", append([]byte{sessionFormat}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"a varint overflowing 64 bits is refused", []byte{sessionFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"a group count larger than the bytes left is refused", hugeGroups},
		{"a session without an ID is refused", withoutID},
		{"a session without a subject is refused", withoutSubject},
		{"all 0xff bytes are refused", bytes.Repeat([]byte{0xff}, 64)},
		{"all zero bytes are refused", make([]byte, 64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Session
			if err := s.Unmarshal(tc.b); err != errSessionMalformed {
				t.Fatalf("Unmarshal(%x) = %v, want %v", tc.b, err, errSessionMalformed)
			}
		})
	}
}

func TestSessionUnmarshalRefusesEveryTruncation(t *testing.T) {
	valid := fullSession().Marshal()
	for n := 0; n < len(valid); n++ {
		var s Session
		if err := s.Unmarshal(valid[:n]); err != errSessionMalformed {
			t.Fatalf("the first %d of %d bytes: err = %v, want %v", n, len(valid), err, errSessionMalformed)
		}
	}
}

func TestSessionUnmarshalSurvivesEveryOneByteCorruption(t *testing.T) {
	valid := fullSession().Marshal()
	for i := range valid {
		for _, x := range []byte{0x00, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(valid)
			b[i] = x
			var s Session
			if err := s.Unmarshal(b); err == nil && (s.ID == "" || s.Subject == "") {
				t.Fatalf("byte %d = %#x: accepted a session without ID or subject", i, x)
			}
		}
	}
}

func TestSessionClaimValueFindsAKeptClaim(t *testing.T) {
	s := fullSession()
	for _, tc := range []struct {
		name   string
		claim  string
		want   string
		wantOK bool
	}{
		{"a kept claim is found", "department", "engineering", true},
		{"a namespaced claim is found whole", "https://example.com/tier", "gold", true},
		{"a claim that was not kept is absent", "salary", "", false},
		{"names are case-sensitive", "Department", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := s.ClaimValue(tc.claim)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("ClaimValue(%q) = (%q, %v), want (%q, %v)", tc.claim, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// FuzzSessionUnmarshal: no input makes Unmarshal panic, and whatever it accepts marshals back
// into a value that decodes to the same session.
func FuzzSessionUnmarshal(f *testing.F) {
	f.Add(fullSession().Marshal())
	f.Add((&Session{ID: "i", Subject: "s"}).Marshal())
	f.Add([]byte{})
	f.Add([]byte{sessionFormat})
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		if err := s.Unmarshal(b); err != nil {
			if err != errSessionMalformed {
				t.Fatalf("Unmarshal error %v, want %v", err, errSessionMalformed)
			}
			return
		}
		if s.ID == "" || s.Subject == "" {
			t.Fatalf("accepted a session without ID or subject: %+v", s)
		}
		var again Session
		if err := again.Unmarshal(s.Marshal()); err != nil {
			t.Fatalf("an accepted session does not survive a second round trip: %v", err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("second round trip changed the session\n got %+v\nwant %+v", again, s)
		}
	})
}
