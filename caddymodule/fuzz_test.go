package caddymodule

import (
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzSafeReturnTo: whatever the input, the answer is the fallback or a path that no browser
// reads as another origin.
func FuzzSafeReturnTo(f *testing.F) {
	for _, seed := range []string{"/", "/a?b=c#d", "//evil.example", "/\\evil.example", "/%2F%2Fevil", "/%5Cevil",
		"https://evil.example/", "/a\r\nLocation: x", "javascript:alert(1)", "/%", "/\t/evil", "///a", "/.//evil"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got := safeReturnTo(target, "/fallback")
		if got == "/fallback" {
			return
		}
		if got != target {
			t.Fatalf("safeReturnTo rewrote %q to %q", target, got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") ||
			strings.ContainsAny(got, "\\\r\n\t") {
			t.Fatalf("safeReturnTo accepted %q", got)
		}
		if dec, err := url.PathUnescape(u.EscapedPath()); err != nil || strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") {
			t.Fatalf("safeReturnTo accepted %q, which decodes to %q", got, dec)
		}
	})
}

// FuzzUnmarshalCaddyfile feeds arbitrary oidc_auth blocks to the Caddyfile parser: it may
// refuse them, but never panic, and an error never echoes the client secret.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"oidc_auth {\n issuer https://idp/\n client_id a\n client_secret TOPSECRET\n}",
		"oidc_auth {\n client_secret TOPSECRET extra\n}",
		"oidc_auth {\n impersonation {\n state fixed 0123456789abcdef\n confirm off\n }\n}",
		"oidc_auth {\n allow {\n claim dept a b\n expression `x`\n }\n headers {\n claim a b\n user off\n }\n}",
		"oidc_auth {\n cookie {\n insecure\n same_site none\n }\n store memory\n session_lifetime 1h\n}",
		"oidc_auth {\n impersonation {\n state\n }\n}", "oidc_auth x", "oidc_auth {\n store\n}", "oidc_auth {\n{\n}\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "fuzz")
		if err != nil || len(tokens) == 0 || tokens[0].Text != "oidc_auth" {
			return // Caddy calls the parser for the oidc_auth directive only
		}
		var h Handler
		err = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		for i := 1; err != nil && i < len(tokens); i++ {
			if secret := tokens[i].Text; (tokens[i-1].Text == "client_secret" || tokens[i-1].Text == "session_secret") &&
				tokens[i].Line == tokens[i-1].Line && len(secret) >= 8 && strings.Contains(err.Error(), secret) {
				t.Fatalf("an error echoes a secret (%q): %v", secret, err)
			}
		}
	})
}
