package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

func TestSafeReturnToRefusesEveryWayOffTheSite(t *testing.T) {
	t.Parallel()
	const fallback = "/fallback"
	for _, tc := range []struct {
		name   string
		target string
	}{
		{"an empty target is refused", ""},
		{"a protocol-relative URL is refused", "//evil.example"},
		{"three slashes are refused", "///evil.example"},
		{"a slash then a backslash is refused", `/\evil.example`},
		{"slash backslash slash is refused", `/\/evil.example`},
		{"a backslash later in the path is refused", `/a\b`},
		{"a backslash in the query is refused", `/a?next=\\evil.example`},
		{"a scheme without slashes is refused", "https:evil.example"},
		{"an absolute URL is refused", "https://evil.example/path"},
		{"an absolute http URL is refused", "http://evil.example"},
		{"a javascript URL is refused", "javascript:alert(1)"},
		{"a data URL is refused", "data:text/html,<script>alert(1)</script>"},
		{"an encoded protocol-relative URL is refused", "%2f%2fevil.example"},
		{"a path decoding to two slashes is refused", "/%2f%2fevil.example"},
		{"a path decoding to two slashes in upper case is refused", "/%2F%2Fevil.example"},
		{"a path decoding to slash slash after the first is refused", "/%2fevil.example"},
		{"a path decoding to backslashes is refused", "/%5c%5cevil.example"},
		{"a path decoding to a backslash later is refused", "/a/%5Cb"},
		{"a raw tab is refused", "/\t/evil.example"},
		{"a raw newline is refused", "/\n/evil.example"},
		{"a raw carriage return is refused", "/\r/evil.example"},
		{"a NUL byte is refused", "/a\x00b"},
		{"DEL is refused", "/a\x7fb"},
		{"an encoded tab is refused", "/%09/evil.example"},
		{"an encoded newline is refused", "/%0a/evil.example"},
		{"an encoded CRLF header injection is refused", "/%0d%0aSet-Cookie:%20x=1"},
		{"a leading space is refused", " /path"},
		{"a relative path is refused", "path/only"},
		{"a bad escape is refused", "/%zz"},
		{"a user-info URL is refused", "https://user@evil.example"},
		{"a target longer than 2048 bytes is refused", "/" + strings.Repeat("a", 2048)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := safeReturnTo(tc.target, fallback); got != fallback {
				t.Fatalf("safeReturnTo(%q) = %q, want the fallback %q", tc.target, got, fallback)
			}
		})
	}
}

func TestSafeReturnToKeepsPathsOnTheSite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		target string
	}{
		{"the root is kept", "/"},
		{"a path with query and fragment is kept", "/a/b?x=1#f"},
		{"an encoded space is kept", "/path%20with%20space"},
		{"a trailing slash is kept", "/a/b/"},
		{"a query that names another site is kept, being only a query", "/?next=//evil.example"},
		{"a fragment with slashes is kept", "/#//section"},
		{"encoded UTF-8 is kept", "/caf%C3%A9"},
		{"an @ in the path is kept", "/users/@alice"},
		{"a target of exactly 2048 bytes is kept", "/" + strings.Repeat("a", 2047)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := safeReturnTo(tc.target, "/fallback"); got != tc.target {
				t.Fatalf("safeReturnTo(%q) = %q, want it unchanged", tc.target, got)
			}
		})
	}
}

// stateHandler is a handler with only what state minting needs.
func stateHandler(secret string) *Handler {
	return &Handler{states: newStateKeys([]string{secret}, "op")}
}

func TestAMintedStateParsesWithItsTimeAndID(t *testing.T) {
	t.Parallel()
	h := stateHandler(unitSecretNew)
	at := unitNow.Add(750 * time.Millisecond)
	state, info := h.states.mintLogin(at)
	if len(state) != stateLen {
		t.Fatalf("state %q has length %d, want %d", state, len(state), stateLen)
	}
	if !info.issued.Equal(unitNow) {
		t.Errorf("minted issued %v, want %v (whole seconds)", info.issued, unitNow)
	}
	if len(info.id) != 16 {
		t.Errorf("id %q has length %d, want 16 (12 bytes base64url)", info.id, len(info.id))
	}
	got, ok := h.states.openLogin(state)
	if !ok {
		t.Fatalf("parseState refused its own state %q", state)
	}
	if !got.issued.Equal(unitNow) || got.id != info.id {
		t.Errorf("parseState = %+v, want issued %v and id %q", got, unitNow, info.id)
	}
	if other, _ := h.states.mintLogin(at); other == state {
		t.Errorf("two states minted at once are equal: %q", state)
	}
}

func TestAStateThatIsNotOursIsRefused(t *testing.T) {
	t.Parallel()
	h := stateHandler(unitSecretNew)
	state, _ := h.states.mintLogin(unitNow)
	t.Run("every changed character makes a state not ours", func(t *testing.T) {
		t.Parallel()
		for i := 0; i < len(state); i++ {
			for _, c := range []byte{'A', 'z', '-', '_', '0'} {
				if state[i] == c {
					continue
				}
				mutated := state[:i] + string(c) + state[i+1:]
				if _, ok := h.states.openLogin(mutated); ok {
					t.Fatalf("character %d set to %q: the state is still taken as ours", i, c)
				}
			}
		}
	})
	for _, tc := range []struct {
		name  string
		h     *Handler
		state string
	}{
		{"a state minted with another key is not ours", stateHandler(unitSecretOld), state},
		{"a state one character short is not ours", h, state[:len(state)-1]},
		{"a state one character long is not ours", h, state + "A"},
		{"a state with padding is not ours", h, state[:len(state)-1] + "="},
		{"a state with a newline inside is not ours", h, state[:10] + "\n" + state[11:]},
		{"an empty state is not ours", h, ""},
		{"a provider's own state is not ours", h, "eyJyZXR1cm5UbyI6Ii8ifQ"},
		{"punctuation of the right length is not ours", h, strings.Repeat("!", stateLen)},
		{"zero bytes of the right length are not ours", h, base64.RawURLEncoding.EncodeToString(make([]byte, 8+macTokenRandom+macTokenTag))},
		{"a signed impersonation state is not a login state", h, "i." + strings.Repeat("A", 59)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if info, ok := tc.h.states.openLogin(tc.state); ok || info != (loginState{}) {
				t.Fatalf("parseState(%q) = (%+v, %v), want not ours", tc.state, info, ok)
			}
		})
	}
}

// mintSignedState builds a signed impersonation state as serveMintState does, for minter.
func mintSignedState(h *Handler, issued time.Time, minter string) (string, []byte) {
	sum := sha256.Sum256([]byte(minter))
	token, random := mintMACToken(h.states.signed[0], issued, sum[:signedStateBound])
	return "i." + token, random
}

// A signed state is single use: the store remembers the state string. So only its one
// canonical spelling may parse, or a used state could be replayed in another spelling.
func TestASignedStateParsesOnlyInItsCanonicalSpelling(t *testing.T) {
	t.Parallel()
	h := stateHandler(unitSecretNew)
	state, _ := mintSignedState(h, unitNow, "auth0|admin")
	info, ok := h.states.openSigned(state)
	if !ok || !info.issued.Equal(unitNow) {
		t.Fatalf("parseSignedState(%q) = (%+v, %v), want issued %v", state, info, ok, unitNow)
	}
	if !h.states.signedBy(state, &claims.Impersonator{ID: "auth0|admin"}) {
		t.Errorf("the state does not match the impersonator who minted it")
	}
	if h.states.signedBy(state, &claims.Impersonator{ID: "auth0|other"}) {
		t.Errorf("the state matches an impersonator who did not mint it")
	}
	last := state[len(state)-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	// The last character carries 4 bits of the MAC and 2 unused bits: the characters that
	// differ only in those 2 bits decode to the same bytes.
	idx := strings.IndexByte(alphabet, last)
	for _, tc := range []struct {
		name  string
		state string
	}{
		{"a state whose unused trailing bits are set is refused", state[:len(state)-1] + string(alphabet[idx^1])},
		{"a state whose other unused trailing bit is set is refused", state[:len(state)-1] + string(alphabet[idx^2])},
		{"a state with a newline inside is refused", state[:20] + "\n" + state[20:]},
		{"a state with a carriage return at the end is refused", state + "\r"},
		{"a state with a flipped character is refused", state[:10] + string(alphabet[(strings.IndexByte(alphabet, state[10])+1)%64]) + state[11:]},
		{"a state minted with another key is refused", func() string { s, _ := mintSignedState(stateHandler(unitSecretOld), unitNow, "auth0|admin"); return s }()},
		{"a login state is not a signed state", func() string { s, _ := h.states.mintLogin(unitNow); return s }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.state == state {
				t.Fatalf("the variant equals the original")
			}
			if info, ok := h.states.openSigned(tc.state); ok {
				t.Fatalf("parseSignedState(%q) = (%+v, true), want refused", tc.state, info)
			}
		})
	}
}

func TestAnAttemptSurvivesMarshalAndUnmarshal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a    attempt
	}{
		{"an attempt with every field round-trips", attempt{State: "state-value", Nonce: "nonce-value",
			Verifier: "verifier-value-with-43-characters-aaaaaaaaa", ReturnTo: "/a/b?x=1#f", Issued: unitNow}},
		{"an attempt with empty strings round-trips", attempt{Issued: unitNow}},
		{"an attempt issued before 1970 round-trips", attempt{State: "s", Issued: time.Unix(-1, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got attempt
			if !got.unmarshal(tc.a.marshal()) {
				t.Fatalf("unmarshal refused %+v", tc.a)
			}
			if got.State != tc.a.State || got.Nonce != tc.a.Nonce || got.Verifier != tc.a.Verifier ||
				got.ReturnTo != tc.a.ReturnTo || !got.Issued.Equal(tc.a.Issued) {
				t.Fatalf("round trip gave %+v, want %+v", got, tc.a)
			}
		})
	}
}

func TestAttemptUnmarshalRefusesGarbage(t *testing.T) {
	t.Parallel()
	valid := (&attempt{State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/", Issued: unitNow}).marshal()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil is refused", nil},
		{"one extra byte is refused", append(append([]byte{}, valid...), 0)},
		{"a string length past the end is refused", []byte{0x7f, 'a'}},
		{"an overlong varint is refused", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"a session is not an attempt", fullSession().Marshal()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var a attempt
			if a.unmarshal(tc.b) {
				t.Fatalf("unmarshal(%x) accepted %+v", tc.b, a)
			}
		})
	}
	t.Run("every truncation is refused", func(t *testing.T) {
		t.Parallel()
		for n := 0; n < len(valid); n++ {
			var a attempt
			if a.unmarshal(valid[:n]) {
				t.Fatalf("the first %d of %d bytes were accepted as %+v", n, len(valid), a)
			}
		}
	})
}

func TestAnAttemptOpensOnlyAsAnAttempt(t *testing.T) {
	t.Parallel()
	s := unitSealer(t, unitSecretNew)
	a := attempt{State: "st", Nonce: "no", Verifier: "ve", ReturnTo: "/x", Issued: unitNow}
	v := s.Seal(session.PurposeAttempt, a.marshal(), unitNow.Add(attemptTTL))
	plain, err := s.Open(session.PurposeAttempt, v, unitNow.Add(attemptTTL-time.Second))
	var got attempt
	if err != nil || !got.unmarshal(plain) || got.ReturnTo != "/x" {
		t.Fatalf("open as attempt = (%+v, %v), want the attempt", got, err)
	}
	if _, err := s.Open(session.PurposeAttempt, v, unitNow.Add(attemptTTL)); err != session.ErrExpired {
		t.Errorf("open after attemptTTL: err = %v, want %v", err, session.ErrExpired)
	}
	if _, err := s.Open(session.PurposeSession, v, unitNow); err == nil {
		t.Errorf("an attempt opened as a session")
	}
}
