package claims

import (
	"encoding/json"
	"slices"
	"testing"
)

// jsonClaims decodes a claim set as go-oidc does, so numbers are float64 and objects maps.
func jsonClaims(t *testing.T, s string) Set {
	t.Helper()
	var c Set
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		t.Fatalf("claims %s: %v", s, err)
	}
	return c
}

func TestClaimMappingDetectsImpersonation(t *testing.T) {
	auto := Mapping{Mode: ModeAuto}
	namespaced := Mapping{Mode: ModeAuto, Namespace: "https://example.com/"}
	custom := Mapping{Mode: ModeCustom, Impersonated: "https://example.com/is_impersonated",
		ImpersonatorID: "https://example.com/impersonator.user_id", ImpersonatorEmail: "imp.email"}
	customByPresence := Mapping{Mode: ModeCustom, ImpersonatorID: "acting_admin", ImpersonatorEmail: "acting_admin_email"}
	const (
		auth0Top        = `{"sub":"auth0|alice","impersonated":true,"impersonator":{"user_id":"auth0|admin","email":"admin@example.com"}}`
		auth0Namespaced = `{"sub":"auth0|alice","https://example.com/impersonated":true,"https://example.com/impersonator":{"user_id":"auth0|admin","email":"admin@example.com"}}`
		keycloakClaims  = `{"sub":"kc-alice","impersonator":{"id":"kc-admin","username":"admin@example.com"}}`
		actChain        = `{"sub":"alice","act":{"sub":"admin","act":{"sub":"service-a"}}}`
	)
	for _, tc := range []struct {
		name    string
		mapping Mapping
		claims  string
		want    *Impersonator
	}{
		{"auto reads Auth0's top-level claims", auto, auth0Top, &Impersonator{ID: "auth0|admin", Email: "admin@example.com"}},
		{"auth0 reads Auth0's top-level claims", Mapping{Mode: ModeAuth0}, auth0Top, &Impersonator{ID: "auth0|admin", Email: "admin@example.com"}},
		{"auto reads Auth0's namespaced claims", namespaced, auth0Namespaced, &Impersonator{ID: "auth0|admin", Email: "admin@example.com"}},
		{"auth0 reads Auth0's namespaced claims", Mapping{Mode: ModeAuth0, Namespace: "https://example.com/"}, auth0Namespaced, &Impersonator{ID: "auth0|admin", Email: "admin@example.com"}},
		{"namespaced claims are not read without the namespace", auto, auth0Namespaced, nil},
		{"another namespace's claims are not read", Mapping{Mode: ModeAuto, Namespace: "https://other.example/"}, auth0Namespaced, nil},
		{"impersonated true without an impersonator object is impersonated by nobody known", auto, `{"sub":"a","impersonated":true}`, &Impersonator{}},
		{"impersonated false is not impersonation", auto, `{"sub":"a","impersonated":false,"impersonator":{"user_id":"auth0|admin"}}`, nil},
		{"impersonated as a string is not Auth0's flag", Mapping{Mode: ModeAuth0}, `{"sub":"a","impersonated":"true","impersonator":{"user_id":"auth0|admin"}}`, nil},
		{"an Auth0 impersonator without the flag is not impersonation in auth0 mode", Mapping{Mode: ModeAuth0}, `{"sub":"a","impersonator":{"user_id":"auth0|admin","email":"admin@example.com"}}`, nil},
		{"an Auth0 impersonator without the flag is not impersonation in auto mode", auto, `{"sub":"a","impersonator":{"user_id":"auth0|admin","email":"admin@example.com"}}`, nil},
		{"auto reads Keycloak's impersonator; a username never counts as an email", auto, keycloakClaims, &Impersonator{ID: "kc-admin", Username: "admin@example.com"}},
		{"keycloak reads a username that is not an email as username only", Mapping{Mode: ModeKeycloak}, `{"sub":"a","impersonator":{"id":"kc-admin","username":"root"}}`, &Impersonator{ID: "kc-admin", Username: "root"}},
		{"keycloak needs the impersonator's id", Mapping{Mode: ModeKeycloak}, `{"sub":"a","impersonator":{"username":"root"}}`, nil},
		{"keycloak mode reports Auth0's claims as impersonation it does not read", Mapping{Mode: ModeKeycloak}, auth0Top, &Impersonator{Unread: "auth0"}},
		{"auth0 mode reports Keycloak's claims as impersonation it does not read", Mapping{Mode: ModeAuth0}, keycloakClaims, &Impersonator{Unread: "keycloak"}},
		{"auth0 mode reports an act claim as impersonation it does not read", Mapping{Mode: ModeAuth0}, actChain, &Impersonator{Unread: "act"}},
		{"custom mode reports an act claim as impersonation it does not read", Mapping{Mode: ModeCustom, ImpersonatorID: "acting"}, actChain, &Impersonator{Unread: "act"}},
		{"auto reads the outermost actor of an act chain", auto, actChain, &Impersonator{ID: "admin"}},
		{"act reads the actor's sub as its id, never as an email", Mapping{Mode: ModeAct}, `{"sub":"a","act":{"sub":"admin@example.com"}}`, &Impersonator{ID: "admin@example.com"}},
		{"act needs the actor's sub", Mapping{Mode: ModeAct}, `{"sub":"a","act":{"client_id":"x"}}`, nil},
		{"act mode reports Auth0's claims as impersonation it does not read", Mapping{Mode: ModeAct}, auth0Top, &Impersonator{Unread: "auth0"}},
		{"auto prefers Auth0's claims to act", auto, `{"sub":"a","impersonated":true,"impersonator":{"user_id":"auth0|admin"},"act":{"sub":"other"}}`, &Impersonator{ID: "auth0|admin"}},
		{"custom reads namespaced and dotted paths when its flag is true", custom,
			`{"sub":"a","https://example.com/is_impersonated":true,"https://example.com/impersonator.user_id":"u1","imp":{"email":"admin@example.com"}}`,
			&Impersonator{ID: "u1", Email: "admin@example.com"}},
		{"custom with its flag false is not impersonation", custom,
			`{"sub":"a","https://example.com/is_impersonated":false,"https://example.com/impersonator.user_id":"u1"}`, nil},
		{"custom with its flag absent is not impersonation", custom, `{"sub":"a","https://example.com/impersonator.user_id":"u1"}`, nil},
		{"custom without a flag claim goes by the ID claim's presence", customByPresence, `{"sub":"a","acting_admin":"u2","acting_admin_email":"admin@example.com"}`, &Impersonator{ID: "u2", Email: "admin@example.com"}},
		{"auth0 impersonator emails count as verified only when the operator vouches for them", Mapping{Mode: ModeAuth0, TrustEmail: true}, auth0Top,
			&Impersonator{ID: "auth0|admin", Email: "admin@example.com", EmailVerified: true}},
		{"custom impersonator emails count as verified only when the operator vouches for them",
			Mapping{Mode: ModeCustom, ImpersonatorID: "acting_admin", ImpersonatorEmail: "acting_admin_email", TrustEmail: true},
			`{"sub":"a","acting_admin":"u2","acting_admin_email":"admin@example.com"}`, &Impersonator{ID: "u2", Email: "admin@example.com", EmailVerified: true}},
		{"custom renders a numeric impersonator ID", customByPresence, `{"sub":"a","acting_admin":42}`, &Impersonator{ID: "42"}},
		{"custom without the ID claim is not impersonation", customByPresence, `{"sub":"a","acting_admin_email":"admin@example.com"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.mapping.Detect(jsonClaims(t, tc.claims))
			if ok != (tc.want != nil) {
				t.Fatalf("detect = (%+v, %v), want impersonated %v", got, ok, tc.want != nil)
			}
			if tc.want != nil && *got != *tc.want {
				t.Fatalf("detect found %+v, want %+v", *got, *tc.want)
			}
		})
	}
}

func TestPlainClaimSetsAreNotImpersonationInAnyMode(t *testing.T) {
	plain := []string{
		`{}`,
		`{"sub":"auth0|alice","email":"alice@example.com","email_verified":true,"groups":["staff"]}`,
		`{"sub":"a","impersonated":false}`,
		`{"sub":"a","impersonator":"admin"}`,
		`{"sub":"a","act":"admin"}`,
		`{"sub":"a","impersonator":null,"act":null,"impersonated":null}`,
	}
	for _, m := range []Mapping{{Mode: ModeAuto}, {Mode: ModeAuth0, Namespace: "https://example.com/"}, {Mode: ModeKeycloak}, {Mode: ModeAct},
		{Mode: ModeCustom, ImpersonatorID: "impersonator.user_id"}} {
		t.Run(m.Mode.String()+" mode finds no impersonation in plain claim sets", func(t *testing.T) {
			for _, c := range plain {
				if imp, ok := m.Detect(jsonClaims(t, c)); ok || imp != nil {
					t.Errorf("claims %s: detect = (%+v, %v), want (nil, false)", c, imp, ok)
				}
			}
		})
	}
}

func TestClaimsLookup(t *testing.T) {
	c := jsonClaims(t, `{
		"email": "alice@example.com",
		"address": {"country": "NL", "geo": {"lat": 52.1}},
		"https://example.com/roles": ["a", "b"],
		"https://example.com/org": {"unit": "x"},
		"a.b": "literal key",
		"a": {"b": "nested"},
		"list": [{"x": 1}],
		"nothing": null
	}`)
	for _, tc := range []struct {
		name   string
		path   string
		want   any
		wantOK bool
	}{
		{"a top-level claim is found", "email", "alice@example.com", true},
		{"a nested claim is found by a dotted path", "address.country", "NL", true},
		{"a deeply nested claim is found", "address.geo.lat", 52.1, true},
		{"a namespaced claim with dots is found whole", "https://example.com/roles", []any{"a", "b"}, true},
		{"a key that is itself dotted wins over the nested path", "a.b", "literal key", true},
		{"a null claim is found as nil", "nothing", nil, true},
		{"a missing claim is not found", "phone", nil, false},
		{"a missing nested claim is not found", "address.city", nil, false},
		{"a path through a string is not found", "email.domain", nil, false},
		{"a path through a list is not found", "list.x", nil, false},
		{"a path into a namespaced object is not found", "https://example.com/org.unit", nil, false},
		{"an empty path is not found", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.Lookup(tc.path)
			if ok != tc.wantOK || !jsonEqual(t, got, tc.want) {
				t.Fatalf("lookup(%q) = (%#v, %v), want (%#v, %v)", tc.path, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("marshal: %v %v", err1, err2)
	}
	return string(x) == string(y)
}

func TestClaimsStrAndBooleanAndStrings(t *testing.T) {
	c := jsonClaims(t, `{"s":"v","n":3,"t":true,"ts":"true","fs":"yes","l":["a",1,"b",null],"one":"solo","empty":""}`)
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"str reads a string", c.Str("s"), "v"},
		{"str of a number is empty", c.Str("n"), ""},
		{"str of a missing claim is empty", c.Str("missing"), ""},
		{"boolean reads true", c.Bool("t"), true},
		{"boolean reads the string true", c.Bool("ts"), true},
		{"boolean of another string is false", c.Bool("fs"), false},
		{"boolean of a number is false", c.Bool("n"), false},
		{"strings keeps the strings of a list", c.Strings("l"), []string{"a", "b"}},
		{"strings of one string is a list of it", c.Strings("one"), []string{"solo"}},
		{"strings of an empty string is nil", c.Strings("empty"), []string(nil)},
		{"strings of a number is nil", c.Strings("n"), []string(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch want := tc.want.(type) {
			case []string:
				if got := tc.got.([]string); !slices.Equal(got, want) || (got == nil) != (want == nil) {
					t.Fatalf("got %#v, want %#v", got, want)
				}
			default:
				if tc.got != tc.want {
					t.Fatalf("got %#v, want %#v", tc.got, tc.want)
				}
			}
		})
	}
}

func TestRenderTurnsClaimsIntoHeaderValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"a string is itself", "engineering", "engineering"},
		{"an empty string is empty", "", ""},
		{"nil is empty", nil, ""},
		{"true is true", true, "true"},
		{"false is false", false, "false"},
		{"an integral number has no decimals", float64(42), "42"},
		{"a fraction keeps its decimals", 2.5, "2.5"},
		{"a negative number keeps its sign", float64(-7), "-7"},
		{"a large number is not in exponent form", 1e21, "1000000000000000000000"},
		{"a list of scalars is joined with commas", []any{"a", float64(1), true, nil}, "a,1,true,"},
		{"an empty list is empty", []any{}, ""},
		{"an object is compact JSON with sorted keys", map[string]any{"b": float64(2), "a": "x"}, `{"a":"x","b":2}`},
		{"a list of objects joins their JSON", []any{map[string]any{"a": float64(1)}, map[string]any{"b": float64(2)}}, `{"a":1},{"b":2}`},
		{"a nested list is flattened with commas", []any{[]any{"a", "b"}, "c"}, "a,b,c"},
		{"an element holding a comma is left out", []any{"x,admin", "staff", []any{"y,z"}}, "staff"},
		{"an object holding a comma is left out of a list", []any{map[string]any{"a": 1.0, "b": 2.0}, "c"}, "c"},
		{"CR and LF are replaced by spaces", "a\r\nX-Evil: 1", "a  X-Evil: 1"},
		{"tab, NUL and DEL are replaced by spaces", "a\tb\x00c\x7fd", "a b c d"},
		{"control characters in list elements are replaced", []any{"a\nb", "c"}, "a b,c"},
		{"control characters in an object are escaped by JSON", map[string]any{"k": "a\nb"}, `{"k":"a\nb"}`},
		{"non-ASCII text is kept", "Ängström ✓", "Ängström ✓"},
		{"a Go integer (not from JSON) is rendered as JSON", 7, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Render(tc.v); got != tc.want {
				t.Fatalf("Render(%#v) = %q, want %q", tc.v, got, tc.want)
			}
		})
	}
}

func TestScopesAreReadFromScopeOrScp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    Set
		want []string
	}{
		{"scope, space-separated", Set{"scope": "openid  read:a\twrite:b"}, []string{"openid", "read:a", "write:b"}},
		{"scp as an array (Okta)", Set{"scp": []any{"read:a", "write:b"}}, []string{"read:a", "write:b"}},
		{"scp as a string (Azure AD)", Set{"scp": "read:a write:b"}, []string{"read:a", "write:b"}},
		{"scope wins over scp", Set{"scope": "read:a", "scp": []any{"admin"}}, []string{"read:a"}},
		{"scp elements that are not one scope are dropped", Set{"scp": []any{"ok", 7.0, "two words", "", true}}, []string{"ok"}},
		{"a scope that is not a string is no scope", Set{"scope": []any{"admin"}}, nil},
		{"neither claim", Set{}, nil},
	} {
		if got := Scopes(tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Scopes = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestActorEmailIsVerifiedOnlyWhenTrusted(t *testing.T) {
	t.Parallel()
	c := Set{"sub": "user", "act": map[string]any{"sub": "admin", "email": "admin@example.com"}}
	imp, ok := Mapping{Mode: ModeAct}.Detect(c)
	if !ok || imp.ID != "admin" || imp.Email != "admin@example.com" || imp.EmailVerified {
		t.Errorf("untrusted: %+v %v", imp, ok)
	}
	imp, ok = Mapping{Mode: ModeAct, TrustEmail: true}.Detect(c)
	if !ok || !imp.EmailVerified {
		t.Errorf("trusted: %+v %v", imp, ok)
	}
}
