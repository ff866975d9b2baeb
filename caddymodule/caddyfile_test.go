package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/relyingparty/caddy-oidc-auth/internal/policy"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// -update rewrites the golden testdata/*.json files from testdata/*.caddyfile. It is
// registered only once, in case another test file of the package registers it too.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata")
	}
}

func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func boolPtr(b bool) *bool { return &b }

func TestUnmarshalCaddyfileReadsEveryOption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "an empty block leaves everything to the defaults",
			input: `oidc_auth`,
			want:  Handler{},
		},
		{
			name: "every top-level option is read",
			input: `oidc_auth {
				issuer https://tenant.eu.auth0.com/
				client_id {env.OIDC_CLIENT_ID}
				client_secret {env.OIDC_CLIENT_SECRET}
				redirect_uri https://app.example.com/auth/callback
				scopes openid profile email offline_access
				audience https://api.example.com
				session_secret {env.NEW} {env.OLD} third-secret-value
				session_claims department roles
				session_lifetime 8h
				session_idle 30m
				refresh on
				unauthenticated deny
			}`,
			want: Handler{
				Issuer: "https://tenant.eu.auth0.com/", ClientID: "{env.OIDC_CLIENT_ID}", ClientSecret: "{env.OIDC_CLIENT_SECRET}",
				RedirectURI: "https://app.example.com/auth/callback", Scopes: []string{"openid", "profile", "email", "offline_access"},
				Audience: "https://api.example.com", SessionSecrets: []string{"{env.NEW}", "{env.OLD}", "third-secret-value"},
				SessionClaims: []string{"department", "roles"}, SessionLifetime: durationOf(8 * time.Hour),
				SessionIdle: durationOf(30 * time.Minute), Refresh: true, Unauthenticated: "deny",
			},
		},
		{
			name:  "client_key and client_auth_method private_key_jwt are read",
			input: "oidc_auth {\n client_key {env.OIDC_CLIENT_KEY}\n client_auth_method private_key_jwt\n}",
			want:  Handler{ClientKeyFile: "{env.OIDC_CLIENT_KEY}", ClientAuthMethod: "private_key_jwt"},
		},
		{
			name: "the bearer block is read, only as an argument or an option",
			input: `oidc_auth {
				bearer only {
					audience https://api.example.com
					clock_skew 1m
				}
				allow {
					scopes read:reports write:reports
				}
				headers {
					scopes X-Scopes
				}
			}`,
			want: Handler{Bearer: &BearerConfig{Audience: "https://api.example.com", ClockSkew: durationOf(time.Minute), Only: true},
				Allow: &AllowConfig{Scopes: []string{"read:reports", "write:reports"}}, Headers: &HeadersConfig{Scopes: "X-Scopes"}},
		},
		{
			name:  "bearer alone, and only inside its block",
			input: "oidc_auth {\n bearer\n}",
			want:  Handler{Bearer: &BearerConfig{}},
		},
		{
			name:  "only inside the bearer block",
			input: "oidc_auth {\n bearer {\n only\n }\n}",
			want:  Handler{Bearer: &BearerConfig{Only: true}},
		},
		{
			name:  "refresh off is read",
			input: "oidc_auth {\n refresh off\n}",
			want:  Handler{Refresh: false},
		},
		{
			name: "the cookie block is read, insecure without a value",
			input: `oidc_auth {
				cookie {
					name my_session
					domain example.com
					same_site none
					insecure
				}
			}`,
			want: Handler{Cookie: &CookieConfig{Name: "my_session", Domain: "example.com", SameSite: "none", Insecure: true}},
		},
		{
			name:  "a cookie block with insecure alone is read",
			input: "oidc_auth {\n cookie {\n insecure\n }\n}",
			want:  Handler{Cookie: &CookieConfig{Insecure: true}},
		},
		{
			name: "the allow block is read, repeated lists appended and each claim a rule",
			input: `oidc_auth {
				allow {
					emails alice@example.com bob@example.com
					emails carol@example.com
					domains example.com example.org
					groups admins support
					groups_claim https://example.com/groups
					claim department engineering sales
					claim level 3
					expression ` + "`" + `"staff" in claims.roles` + "`" + `
				}
			}`,
			want: Handler{Allow: &AllowConfig{
				Emails: []string{"alice@example.com", "bob@example.com", "carol@example.com"}, Domains: []string{"example.com", "example.org"},
				Groups: []string{"admins", "support"}, GroupsClaim: "https://example.com/groups",
				Claims:     []ClaimRule{{Claim: "department", Values: []string{"engineering", "sales"}}, {Claim: "level", Values: []string{"3"}}},
				Expression: `"staff" in claims.roles`,
			}},
		},
		{
			name: "the impersonation block is read with a fixed state",
			input: `oidc_auth {
				impersonation {
					claims custom
					namespace https://example.com/
					impersonated_claim https://example.com/impersonated
					impersonator_id_claim https://example.com/impersonator.user_id
					impersonator_email_claim https://example.com/impersonator.email
					impersonators admin@example.com auth0|5f1c
					impersonators root
					protect ceo@example.com example-admins.com
					expression "impersonator.email != \"\""
					state fixed 0123456789abcdef-fixed
					confirm off
					max_age 2m
					lifetime 30m
					landing /home
				}
			}`,
			want: Handler{Impersonation: &ImpersonationConfig{
				Claims: "custom", Namespace: "https://example.com/", ImpersonatedClaim: "https://example.com/impersonated",
				ImpersonatorIDClaim: "https://example.com/impersonator.user_id", ImpersonatorEmailClaim: "https://example.com/impersonator.email",
				Impersonators: []string{"admin@example.com", "auth0|5f1c", "root"}, Protect: []string{"ceo@example.com", "example-admins.com"},
				Expression: `impersonator.email != ""`, State: "fixed", StateValue: "0123456789abcdef-fixed", Confirm: boolPtr(false),
				MaxAge: durationOf(2 * time.Minute), Lifetime: durationOf(30 * time.Minute), Landing: "/home",
			}},
		},
		{
			name:  "state signed and confirm on are read",
			input: "oidc_auth {\n impersonation {\n state signed\n confirm on\n }\n}",
			want:  Handler{Impersonation: &ImpersonationConfig{State: "signed", Confirm: boolPtr(true)}},
		},
		{
			name:  "an empty impersonation block enables impersonation",
			input: "oidc_auth {\n impersonation\n}",
			want:  Handler{Impersonation: &ImpersonationConfig{}},
		},
		{
			name: "the headers block is read, with off and claim headers",
			input: `oidc_auth {
				headers {
					user X-User
					email off
					preferred_username X-Username
					groups X-Groups
					impersonated X-Impersonated
					impersonator X-Impersonator
					impersonator_email X-Impersonator-Email
					access_token Authorization
					id_token X-Id-Token
					claim department X-Department
					claim address.country X-Country
				}
			}`,
			want: Handler{Headers: &HeadersConfig{
				User: "X-User", Email: "off", PreferredUsername: "X-Username", Groups: "X-Groups", Impersonated: "X-Impersonated",
				Impersonator: "X-Impersonator", ImpersonatorEmail: "X-Impersonator-Email", AccessToken: "Authorization", IDToken: "X-Id-Token",
				Claims: []HeaderClaim{{Claim: "department", Header: "X-Department"}, {Claim: "address.country", Header: "X-Country"}},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got Handler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Fatalf("parsed\n %s\nwant\n %s", g, w)
			}
		})
	}
}

func TestUnmarshalCaddyfileRefusesMistakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		input string
		want  string
	}{
		{"an argument on the directive is refused", "oidc_auth extra",
			"wrong argument count or unexpected line ending after 'extra', at Testfile:1"},
		{"an unknown option is refused by name", "oidc_auth {\n bogus x\n}",
			`unrecognized oidc_auth option "bogus", at Testfile:2`},
		{"an unknown cookie option is refused by name", "oidc_auth {\n cookie {\n secure\n }\n}",
			`unrecognized oidc_auth cookie option "secure", at Testfile:3`},
		{"an unknown allow option is refused by name", "oidc_auth {\n allow {\n users alice\n }\n}",
			`unrecognized oidc_auth allow option "users", at Testfile:3`},
		{"an unknown impersonation option is refused by name", "oidc_auth {\n impersonation {\n admins root\n }\n}",
			`unrecognized oidc_auth impersonation option "admins", at Testfile:3`},
		{"an unknown headers option is refused by name", "oidc_auth {\n headers {\n name X-Name\n }\n}",
			`unrecognized oidc_auth headers option "name", at Testfile:3`},
		{"an unknown bearer option is refused by name", "oidc_auth {\n bearer {\n issuer x\n }\n}",
			`unrecognized oidc_auth bearer option "issuer", at Testfile:3`},
		{"a bearer argument other than only is refused", "oidc_auth {\n bearer always\n}",
			`bearer takes only the argument only, not "always", at Testfile:2`},
		{"a bearer clock_skew that is not a duration is refused", "oidc_auth {\n bearer {\n clock_skew soon\n }\n}",
			`clock_skew "soon": not a duration, at Testfile:3`},
		{"issuer without a value is refused", "oidc_auth {\n issuer\n}",
			"issuer takes exactly one value, at Testfile:2"},
		{"issuer with two values is refused", "oidc_auth {\n issuer https://a/ https://b/\n}",
			"issuer takes exactly one value, at Testfile:2"},
		{"client_id with two values is refused", "oidc_auth {\n client_id a b\n}",
			"client_id takes exactly one value, at Testfile:2"},
		{"client_secret with two values is refused without showing the secret", "oidc_auth {\n client_secret s3cr3t-client-value extra\n}",
			"client_secret takes exactly one value, at Testfile:2"},
		{"client_key without a path is refused", "oidc_auth {\n client_key\n}",
			"client_key takes exactly one value, at Testfile:2"},
		{"client_key with two paths is refused", "oidc_auth {\n client_key /etc/a.pem /etc/b.pem\n}",
			"client_key takes exactly one value, at Testfile:2"},
		{"unauthenticated without a value is refused", "oidc_auth {\n unauthenticated\n}",
			"unauthenticated takes exactly one value, at Testfile:2"},
		{"scopes without a value is refused", "oidc_auth {\n scopes\n}",
			"scopes needs at least one value, at Testfile:2"},
		{"session_secret without a value is refused", "oidc_auth {\n session_secret\n}",
			"session_secret needs at least one value, at Testfile:2"},
		{"a duration that does not parse is refused", "oidc_auth {\n session_lifetime forever\n}",
			`session_lifetime "forever": not a duration, at Testfile:2`},
		{"a negative duration is refused", "oidc_auth {\n session_idle -1h\n}",
			`session_idle "-1h": not a duration, at Testfile:2`},
		{"a duration without a value is refused", "oidc_auth {\n session_lifetime\n}",
			"session_lifetime takes one duration, at Testfile:2"},
		{"two durations are refused", "oidc_auth {\n impersonation {\n lifetime 1h 2h\n }\n}",
			"lifetime takes one duration, at Testfile:3"},
		{"a bad max_age is refused", "oidc_auth {\n impersonation {\n max_age soon\n }\n}",
			`max_age "soon": not a duration, at Testfile:3`},
		{"refresh yes is refused", "oidc_auth {\n refresh yes\n}",
			`refresh "yes": want on or off, at Testfile:2`},
		{"refresh without a value is refused", "oidc_auth {\n refresh\n}",
			"refresh takes on or off, at Testfile:2"},
		{"confirm true is refused", "oidc_auth {\n impersonation {\n confirm true\n }\n}",
			`confirm "true": want on or off, at Testfile:3`},
		{"an argument on cookie is refused", "oidc_auth {\n cookie strict\n}",
			"wrong argument count or unexpected line ending after 'strict', at Testfile:2"},
		{"a value on insecure is refused", "oidc_auth {\n cookie {\n insecure yes\n }\n}",
			"wrong argument count or unexpected line ending after 'yes', at Testfile:3"},
		{"cookie name without a value is refused", "oidc_auth {\n cookie {\n name\n }\n}",
			"name takes exactly one value, at Testfile:3"},
		{"an argument on allow is refused", "oidc_auth {\n allow everyone\n}",
			"wrong argument count or unexpected line ending after 'everyone', at Testfile:2"},
		{"an allow claim without values is refused", "oidc_auth {\n allow {\n claim department\n }\n}",
			"claim needs a claim name and at least one value, at Testfile:3"},
		{"an allow claim without anything is refused", "oidc_auth {\n allow {\n claim\n }\n}",
			"claim needs at least one value, at Testfile:3"},
		{"emails without a value is refused", "oidc_auth {\n allow {\n emails\n }\n}",
			"emails needs at least one value, at Testfile:3"},
		{"an expression in two tokens is refused", "oidc_auth {\n allow {\n expression claims.a == 1\n }\n}",
			"expression takes exactly one value, at Testfile:3"},
		{"an argument on impersonation is refused", "oidc_auth {\n impersonation on\n}",
			"wrong argument count or unexpected line ending after 'on', at Testfile:2"},
		{"state fixed without a value is refused", "oidc_auth {\n impersonation {\n state fixed\n }\n}",
			"state takes any, signed, or fixed VALUE, at Testfile:3"},
		{"state fixed with two values is refused", "oidc_auth {\n impersonation {\n state fixed a b\n }\n}",
			"state takes any, signed, or fixed VALUE, at Testfile:3"},
		{"state any with a value is refused", "oidc_auth {\n impersonation {\n state any x\n }\n}",
			"state takes any, signed, or fixed VALUE, at Testfile:3"},
		{"state without a value is refused", "oidc_auth {\n impersonation {\n state\n }\n}",
			"state takes any, signed, or fixed VALUE, at Testfile:3"},
		{"an argument on headers is refused", "oidc_auth {\n headers off\n}",
			"wrong argument count or unexpected line ending after 'off', at Testfile:2"},
		{"a header claim without a header is refused", "oidc_auth {\n headers {\n claim department\n }\n}",
			"claim takes a claim name and a header name, at Testfile:3"},
		{"a header claim with three values is refused", "oidc_auth {\n headers {\n claim department X-Dept extra\n }\n}",
			"claim takes a claim name and a header name, at Testfile:3"},
		{"a header without a name is refused", "oidc_auth {\n headers {\n user\n }\n}",
			"user takes exactly one value, at Testfile:3"},
		{"a header with two names is refused", "oidc_auth {\n headers {\n email X-A X-B\n }\n}",
			"email takes exactly one value, at Testfile:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("UnmarshalCaddyfile error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCaddyfilesAdaptToTheGoldenJSON adapts each testdata/NAME.caddyfile as `caddy adapt`
// would and compares it with testdata/NAME.json; -update rewrites the JSON.
func TestCaddyfilesAdaptToTheGoldenJSON(t *testing.T) {
	t.Parallel()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 3 {
		t.Fatalf("found %d golden Caddyfiles (%v), want at least 3", len(inputs), inputs)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".caddyfile")
		t.Run(name+" adapts to its golden JSON", func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
			out, warnings, err := adapter.Adapt(body, map[string]any{"filename": in})
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			if len(warnings) > 0 {
				t.Errorf("adapting warned: %v", warnings)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", name+".json")
			if updateGoldens() {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading the golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("%s adapts to\n%s\nwant (%s)\n%s", in, pretty.Bytes(), golden, want)
			}
		})
	}
}

// TestTheGoldenHandlerJSONDecodesStrictly checks that the adapted handler config names only
// fields the Handler has, so no option is lost between Caddyfile and JSON.
func TestTheGoldenHandlerJSONDecodesStrictly(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile(filepath.Join("testdata", "full.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := findHandler(t, body)
	if cfg["handler"] != "oidc_auth" {
		t.Fatalf("handler %v", cfg["handler"])
	}
	delete(cfg, "handler")
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var h Handler
	if err := dec.Decode(&h); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	if h.Issuer != "https://tenant.eu.auth0.com/" || len(h.SessionSecrets) != 2 || h.Impersonation == nil ||
		h.Impersonation.State != "signed" || h.Headers == nil || h.Headers.AccessToken != "Authorization" ||
		h.Allow == nil || len(h.Allow.Claims) != 1 {
		t.Errorf("decoded %s into %+v", raw, h)
	}
}

// findHandler returns the first JSON object with "handler": "oidc_auth" in a Caddy config.
func findHandler(t *testing.T, config []byte) map[string]any {
	t.Helper()
	var walk func(v any) map[string]any
	walk = func(v any) map[string]any {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "oidc_auth" {
				return x
			}
			for _, e := range x {
				if m := walk(e); m != nil {
					return m
				}
			}
		case []any:
			for _, e := range x {
				if m := walk(e); m != nil {
					return m
				}
			}
		}
		return nil
	}
	var v any
	if err := json.Unmarshal(config, &v); err != nil {
		t.Fatal(err)
	}
	m := walk(v)
	if m == nil {
		t.Fatalf("no oidc_auth handler in %s", config)
	}
	return m
}

// provisionJSON builds a Handler from its JSON config and provisions it as Caddy would.
func provisionJSON(t *testing.T, config string) (*Handler, error) {
	t.Helper()
	var h Handler
	if err := json.Unmarshal([]byte(config), &h); err != nil {
		t.Fatalf("config %s: %v", config, err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := h.Provision(ctx)
	if err == nil {
		t.Cleanup(func() { _ = h.Cleanup() })
		err = h.Validate()
	}
	return &h, err
}

const (
	unitClientSecret = "client-secret-never-shown"
	unitShortSecret  = "too-short-secret"
)

func TestProvisionRefusesBadConfigurationWithoutShowingSecrets(t *testing.T) {
	t.Setenv("UNIT_OIDC_SHORT_SECRET", "env-secret-short")
	base := func(extra string) string {
		return `{"issuer":"https://idp.example.com/","client_id":"app","client_secret":"` + unitClientSecret +
			`","session_secrets":["` + unitSecretNew + `"]` + extra + `}`
	}
	for _, tc := range []struct {
		name   string
		config string
		want   string // the error starts with this
	}{
		{"a missing issuer is refused", `{"client_id":"app","session_secrets":["` + unitSecretNew + `"]}`,
			"oidc_auth: issuer is required"},
		{"an issuer that is not a URL is refused", `{"issuer":"idp.example.com","client_id":"app","session_secrets":["` + unitSecretNew + `"]}`,
			`oidc_auth issuer "idp.example.com": not an http(s) URL`},
		{"a missing client_id is refused", `{"issuer":"https://idp.example.com/","session_secrets":["` + unitSecretNew + `"]}`,
			"oidc_auth: client_id is required"},
		{"a missing session secret is refused", `{"issuer":"https://idp.example.com/","client_id":"app","client_secret":"` + unitClientSecret + `"}`,
			"oidc_auth: session_secret is required"},
		{"a session secret shorter than 32 bytes is refused", `{"issuer":"https://idp.example.com/","client_id":"app","session_secrets":["` + unitShortSecret + `"]}`,
			"oidc_auth session_secret #1: 16 bytes, at least 32 are required"},
		{"a short old secret is refused", `{"issuer":"https://idp.example.com/","client_id":"app","session_secrets":["` + unitSecretNew + `","` + unitShortSecret + `"]}`,
			"oidc_auth session_secret #2: 16 bytes, at least 32 are required"},
		{"a short secret from the environment is refused", `{"issuer":"https://idp.example.com/","client_id":"app","session_secrets":["{env.UNIT_OIDC_SHORT_SECRET}"]}`,
			"oidc_auth session_secret #1: 16 bytes, at least 32 are required"},
		{"a secret from an unset variable is missing", `{"issuer":"https://idp.example.com/","client_id":"app","session_secrets":["{env.UNIT_OIDC_UNSET_SECRET}"]}`,
			"oidc_auth: session_secret is required"},
		{"bearer without an audience is refused", base(`,"bearer":{}`),
			"oidc_auth bearer: an audience is required"},
		{"a bearer audience that is the client is refused", base(`,"bearer":{"audience":"app"}`),
			"oidc_auth bearer audience: it must not be the client_id"},
		{"a bearer skew over five minutes is refused", base(`,"audience":"https://api.example.com","bearer":{"clock_skew":"6m"}`),
			"oidc_auth bearer clock_skew: between 0 and 5m0s"},
		{"a scope with a space is refused", base(`,"allow":{"scopes":["read reports"]}`),
			`oidc_auth allow: scope "read reports"`},
		{"a relative redirect_uri is refused", base(`,"redirect_uri":"oauth2/callback"`),
			`oidc_auth redirect_uri "oauth2/callback": want a path starting with / or an absolute http(s) URL`},
		{"a protocol-relative redirect_uri is refused", base(`,"redirect_uri":"//evil.example/callback"`),
			`oidc_auth redirect_uri "//evil.example/callback": a path must be a plain absolute path`},
		{"a redirect_uri with a query is refused", base(`,"redirect_uri":"/cb?x=1"`),
			`oidc_auth redirect_uri "/cb?x=1": a path must be a plain absolute path`},
		{"a redirect_uri of another scheme is refused", base(`,"redirect_uri":"ftp://app.example.com/cb"`),
			`oidc_auth redirect_uri "ftp://app.example.com/cb": want a path starting with / or an absolute http(s) URL`},
		{"same_site none with insecure cookies is refused", base(`,"cookie":{"same_site":"none","insecure":true}`),
			"oidc_auth cookie: same_site none needs Secure cookies; remove insecure"},
		{"an unknown same_site is refused", base(`,"cookie":{"same_site":"sometimes"}`),
			`oidc_auth cookie same_site "sometimes": want lax, strict or none`},
		{"a cookie name with a separator is refused", base(`,"cookie":{"name":"a;b"}`),
			`oidc_auth cookie name "a;b": use letters, digits, '_' and '-' only`},
		{"a bad unauthenticated value is refused", base(`,"unauthenticated":"maybe"`),
			`oidc_auth unauthenticated "maybe": want redirect or deny`},
		{"a negative session lifetime is refused", base(`,"session_lifetime":"-1h"`),
			"oidc_auth: session_lifetime and session_idle must not be negative"},
		{"an allow expression that does not compile is refused", base(`,"allow":{"expression":"claims.roles ==="}`),
			`oidc_auth allow: expression "claims.roles ===" does not compile: `},
		{"a non-boolean allow expression is refused", base(`,"allow":{"expression":"claims.email"}`),
			`oidc_auth allow: expression "claims.email" is dyn, not boolean`},
		{"an allow claim rule without values is refused", base(`,"allow":{"claims":[{"claim":"department"}]}`),
			"oidc_auth allow: claim needs a name and at least one value"},
		{"an impersonation expression that does not compile is refused", base(`,"impersonation":{"expression":"target.roles.exists("}`),
			`oidc_auth impersonation: expression "target.roles.exists(" does not compile: `},
		{"a non-boolean impersonation expression is refused", base(`,"impersonation":{"expression":"'x'"}`),
			`oidc_auth impersonation: expression "'x'" is string, not boolean`},
		{"a short fixed impersonation state is refused", base(`,"impersonation":{"state":"fixed","state_value":"short-state"}`),
			"oidc_auth impersonation: state fixed needs a value of at least 16 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provisionJSON(t, tc.config)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Provision error = %v, want one starting %q", err, tc.want)
			}
			for _, secret := range []string{unitSecretNew, unitShortSecret, unitClientSecret, "env-secret-short", "short-state"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestProvisionResolvesEnvironmentPlaceholdersAndDefaults(t *testing.T) {
	const (
		issuer = "https://idp.example.com/tenant/"
		client = "client-secret-from-env"
		newer  = "session-secret-from-env-0123456789abcdef"
		older  = "older-session-secret-from-env-0123456789"
	)
	t.Setenv("UNIT_OIDC_ISSUER", issuer)
	t.Setenv("UNIT_OIDC_CLIENT_SECRET", client)
	t.Setenv("UNIT_OIDC_SESSION_SECRET", newer)
	t.Setenv("UNIT_OIDC_OLD_SECRET", older)
	h, err := provisionJSON(t, `{"issuer":"{env.UNIT_OIDC_ISSUER}","client_id":"app","client_secret":"{env.UNIT_OIDC_CLIENT_SECRET}",
		"session_secrets":["{env.UNIT_OIDC_SESSION_SECRET}","{env.UNIT_OIDC_OLD_SECRET}"]}`)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"the issuer comes from the environment", h.Issuer, issuer},
		{"the client secret comes from the environment", h.ClientSecret, client},
		{"the session secrets come from the environment", h.SessionSecrets, []string{newer, older}},
		{"redirect_uri defaults to /oauth2/callback", h.RedirectURI, "/oauth2/callback"},
		{"the endpoints sit beside the callback", h.prefix, "/oauth2/"},
		{"scopes default to openid profile email", h.Scopes, []string{"openid", "profile", "email"}},
		{"the cookie defaults to a __Host- Lax cookie", []any{h.jar.Base, h.jar.Domain(), h.jar.Secure(), h.jar.SameSite},
			[]any{"__Host-oidc_auth", "", true, http.SameSiteLaxMode}},
		{"sessions last 12h by default", h.SessionLifetime, durationOf(12 * time.Hour)},
		{"unauthenticated defaults to redirect", h.Unauthenticated, "redirect"},
		{"the default headers are planned", h.headers.user, "X-Forwarded-User"},
		{"no allow block admits everyone", h.allow, (*policy.Allow)(nil)},
		{"no impersonation block refuses impersonation", h.imp, (*impersonationPolicy)(nil)},
		{"the store is the default memory store", h.ownStore != nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("got %#v, want %#v", tc.got, tc.want)
			}
		})
	}
	t.Run("the environment's new secret seals and its old one opens", func(t *testing.T) {
		fromOld := unitSealer(t, older).Seal(session.PurposeSession, []byte("old"), time.Now().Add(time.Hour))
		if got, err := h.sealer.Open(session.PurposeSession, fromOld, time.Now()); err != nil || string(got) != "old" {
			t.Fatalf("open of a value sealed with the old secret = (%q, %v)", got, err)
		}
		fromHandler := h.sealer.Seal(session.PurposeSession, []byte("new"), time.Now().Add(time.Hour))
		if got, err := unitSealer(t, newer).Open(session.PurposeSession, fromHandler, time.Now()); err != nil || string(got) != "new" {
			t.Fatalf("the handler does not seal with the new secret: (%q, %v)", got, err)
		}
	})
}
