package caddymodule

import (
	"encoding/json"
	"strconv"
	"strings"
)

// claims is a decoded JSON claim set (the ID token's, with /userinfo's merged over it).
type claims map[string]any

// lookup finds a claim by name or by dotted path ("address.country"). A name that is itself
// a key wins, so namespaced claims such as "https://example.com/roles" are found whole.
func (c claims) lookup(path string) (any, bool) {
	if v, ok := c[path]; ok {
		return v, true
	}
	var cur any = map[string]any(c)
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (c claims) str(path string) string {
	v, _ := c.lookup(path)
	s, _ := v.(string)
	return s
}

func (c claims) boolean(path string) bool {
	v, _ := c.lookup(path)
	switch b := v.(type) {
	case bool:
		return b
	case string: // some providers send "true"
		return b == "true"
	}
	return false
}

// strings reads a claim holding a list of strings, or one string.
func (c claims) strings(path string) []string {
	v, _ := c.lookup(path)
	switch l := v.(type) {
	case string:
		if l == "" {
			return nil
		}
		return []string{l}
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// render turns a claim value into a header value: strings as they are, numbers and booleans
// as JSON writes them, lists of scalars joined with ",", anything else as compact JSON. Control
// characters are replaced, so no value can split a header.
func render(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, render(e))
		}
		s = strings.Join(parts, ",")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	return headerSafe(s)
}

// headerSafe replaces control characters, which could split or corrupt a header, with spaces.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, s)
		}
	}
	return s
}

// impersonator is who acted as the user, as the provider said.
type impersonator struct {
	ID       string
	Email    string
	Username string
}

// claimMapping reads impersonation from claims: auto, auth0, keycloak, act or custom paths.
type claimMapping struct {
	mode           string
	namespace      string
	impersonated   string // custom: the boolean claim; empty = presence of the ID claim
	impersonatorID string
	impersonatorEm string
}

// detect returns the impersonator when the claims say the identity is impersonated.
func (m claimMapping) detect(c claims) (*impersonator, bool) {
	switch m.mode {
	case "auth0":
		return m.auth0(c)
	case "keycloak":
		return keycloak(c)
	case "act":
		return act(c)
	case "custom":
		return m.custom(c)
	}
	for _, f := range []func(claims) (*impersonator, bool){m.auth0, keycloak, act} {
		if imp, ok := f(c); ok {
			return imp, true
		}
	}
	return nil, false
}

// auth0: "impersonated": true and "impersonator": {user_id, email}, at the top level or under
// the configured namespace (what a Rule or Action may add to the ID token).
func (m claimMapping) auth0(c claims) (*impersonator, bool) {
	for _, prefix := range []string{"", m.namespace} {
		if b, _ := c[prefix+"impersonated"].(bool); b {
			obj, _ := c[prefix+"impersonator"].(map[string]any)
			return &impersonator{ID: str(obj, "user_id"), Email: str(obj, "email")}, true
		}
	}
	return nil, false
}

// keycloak: "impersonator": {id, username}, from Keycloak's impersonator mappers.
func keycloak(c claims) (*impersonator, bool) {
	obj, ok := c["impersonator"].(map[string]any)
	if !ok || str(obj, "id") == "" {
		return nil, false
	}
	// The username is not an email, even when it looks like one: realms may let users edit it.
	return &impersonator{ID: str(obj, "id"), Username: str(obj, "username")}, true
}

// act: RFC 8693 "act": {sub}; in a chain the outermost actor is the current one.
func act(c claims) (*impersonator, bool) {
	obj, ok := c["act"].(map[string]any)
	if !ok || str(obj, "sub") == "" {
		return nil, false
	}
	return &impersonator{ID: str(obj, "sub")}, true
}

func (m claimMapping) custom(c claims) (*impersonator, bool) {
	id, _ := c.lookup(m.impersonatorID)
	imp := &impersonator{ID: render(id), Email: c.str(m.impersonatorEm)}
	impersonated := imp.ID != ""
	if m.impersonated != "" {
		impersonated = c.boolean(m.impersonated)
	}
	if !impersonated {
		// nil, as the other mappings answer: callers read a non-nil impersonator as impersonation.
		return nil, false
	}
	return imp, true
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
