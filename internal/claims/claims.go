// Package claims reads identities out of OpenID Connect claim sets: the standard fields, any
// claim by name or dotted path, and impersonation as Auth0, Keycloak or RFC 8693 show it.
package claims

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Set is a decoded JSON claim set (the ID token's, with /userinfo's merged over it).
type Set map[string]any

// lookup finds a claim by name or by dotted path ("address.country"). A name that is itself
// a key wins, so namespaced claims such as "https://example.com/roles" are found whole.
func (c Set) Lookup(path string) (any, bool) {
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

func (c Set) Str(path string) string {
	v, _ := c.Lookup(path)
	s, _ := v.(string)
	return s
}

func (c Set) Bool(path string) bool {
	v, _ := c.Lookup(path)
	switch b := v.(type) {
	case bool:
		return b
	case string: // some providers send "true"
		return b == "true"
	}
	return false
}

// strings reads a claim holding a list of strings, or one string.
func (c Set) Strings(path string) []string {
	v, _ := c.Lookup(path)
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
func Render(v any) string {
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
		// Elements are joined with ","; one holding a comma is left out, or ["x,admin"] would
		// read upstream as membership of admin.
		s = strings.Join(listParts(nil, x), ",")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	return HeaderSafe(s)
}

// listParts appends the rendered elements of a list, nested lists flattened, leaving out any
// element that holds a comma.
func listParts(parts []string, l []any) []string {
	for _, e := range l {
		if sub, ok := e.([]any); ok {
			parts = listParts(parts, sub)
		} else if p := Render(e); !strings.Contains(p, ",") {
			parts = append(parts, p)
		}
	}
	return parts
}

// headerSafe replaces control characters, which could split or corrupt a header, with spaces.
func HeaderSafe(s string) string {
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

// Identity is who the provider says signed in: the merged claims and the fields read from them.
type Identity struct {
	Claims        Set
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Username      string // preferred_username
	Groups        []string
	// Scopes are the OAuth scopes granted with the token the identity came with.
	Scopes []string
	Imp    *Impersonator // nil unless the identity is impersonated
}

// NewIdentity reads the standard fields of a claim set, the groups from groupsClaim. It is
// not impersonated: the caller sets Imp from a Mapping.
func NewIdentity(c Set, groupsClaim string) *Identity {
	return &Identity{
		Claims:        c,
		Subject:       c.Str("sub"),
		Email:         c.Str("email"),
		EmailVerified: c.Bool("email_verified"),
		Name:          c.Str("name"),
		Username:      c.Str("preferred_username"),
		Groups:        c.Strings(groupsClaim),
	}
}

// Impersonator is who acted as the user, as the provider said.
type Impersonator struct {
	ID    string
	Email string
	// EmailVerified: the provider vouches for Email. Auth0's impersonator object carries no
	// such flag, so its email is unverified unless the operator says otherwise.
	EmailVerified bool
	Username      string
	// Unread names an impersonation signal the configured mode does not read (say an RFC 8693
	// act claim under claims auth0): the login is impersonated, by someone this mode cannot
	// name, and must be refused.
	Unread string
}

// Mode says where impersonation is read from.
type Mode uint8

// The impersonation claim modes.
const (
	ModeAuto     Mode = iota // Auth0's, then Keycloak's, then RFC 8693 act
	ModeAuth0                // impersonated + impersonator {user_id, email}
	ModeKeycloak             // impersonator {id, username}
	ModeAct                  // RFC 8693 act {sub}
	ModeCustom               // the claim paths of the Mapping
)

var modeNames = map[string]Mode{"auto": ModeAuto, "auth0": ModeAuth0, "keycloak": ModeKeycloak,
	"act": ModeAct, "custom": ModeCustom}

// String is the mode's configuration name.
func (m Mode) String() string {
	for name, v := range modeNames {
		if v == m {
			return name
		}
	}
	return "unknown"
}

// ParseMode reads a mode by its configuration name.
func ParseMode(name string) (Mode, bool) {
	m, ok := modeNames[name]
	return m, ok
}

// Mapping reads impersonation from claims.
type Mapping struct {
	Mode      Mode
	Namespace string // the prefix of Auth0 namespaced custom claims
	// ModeCustom: the boolean claim saying the login is impersonated (empty: the presence of
	// the impersonator ID claim says so), and the claims of the impersonator's ID and email.
	Impersonated, ImpersonatorID, ImpersonatorEmail string
	// TrustEmail: the operator vouches for the impersonator emails the provider sends (which
	// carry no verification of their own), so they count as verified.
	TrustEmail bool
}

// Detect returns the Impersonator when the claims say the identity is impersonated.
//
// Every known signal is looked for whatever the mode: one the mode does not read still makes
// the identity impersonated, with an Impersonator whose Unread names it.
func (m Mapping) Detect(c Set) (*Impersonator, bool) {
	var imp *Impersonator
	var ok bool
	switch m.Mode {
	case ModeAuth0:
		imp, ok = m.auth0(c)
	case ModeKeycloak:
		imp, ok = keycloak(c)
	case ModeAct:
		imp, ok = m.act(c)
	case ModeCustom:
		imp, ok = m.custom(c)
	}
	if ok {
		return imp, true
	}
	for _, s := range []struct {
		name   string
		detect func(Set) (*Impersonator, bool)
	}{{"auth0", m.auth0}, {"keycloak", keycloak}, {"act", m.act}} {
		if imp, ok := s.detect(c); ok {
			if m.Mode == ModeAuto {
				return imp, true
			}
			return &Impersonator{Unread: s.name}, true
		}
	}
	return nil, false
}

// auth0: "impersonated": true and "impersonator": {user_id, email}, at the top level or under
// the configured namespace (what a Rule or Action may add to the ID token).
func (m Mapping) auth0(c Set) (*Impersonator, bool) {
	for _, prefix := range []string{"", m.Namespace} {
		if b, _ := c[prefix+"impersonated"].(bool); b {
			obj, _ := c[prefix+"impersonator"].(map[string]any)
			email := str(obj, "email")
			return &Impersonator{ID: str(obj, "user_id"), Email: email, EmailVerified: m.TrustEmail && email != ""}, true
		}
	}
	return nil, false
}

// keycloak: "impersonator": {id, username}, from Keycloak's Impersonator mappers.
func keycloak(c Set) (*Impersonator, bool) {
	obj, ok := c["impersonator"].(map[string]any)
	if !ok || str(obj, "id") == "" {
		return nil, false
	}
	// The username is not an email, even when it looks like one: realms may let users edit it.
	return &Impersonator{ID: str(obj, "id"), Username: str(obj, "username")}, true
}

// act: RFC 8693 "act": {sub, email}; in a chain the outermost actor is the current one. The
// actor's email counts as verified only when the operator trusts the provider's.
func (m Mapping) act(c Set) (*Impersonator, bool) {
	obj, ok := c["act"].(map[string]any)
	if !ok || str(obj, "sub") == "" {
		return nil, false
	}
	email := str(obj, "email")
	return &Impersonator{ID: str(obj, "sub"), Email: email, EmailVerified: m.TrustEmail && email != ""}, true
}

// Scopes reads the scopes a token grants: RFC 9068's space-separated "scope", or the "scp"
// array (or string) of Okta and Azure AD.
func Scopes(c Set) []string {
	if s, ok := c["scope"].(string); ok {
		return strings.Fields(s)
	}
	switch v := c["scp"].(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" && !strings.ContainsAny(s, " \t") {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func (m Mapping) custom(c Set) (*Impersonator, bool) {
	id, _ := c.Lookup(m.ImpersonatorID)
	imp := &Impersonator{ID: Render(id), Email: c.Str(m.ImpersonatorEmail)}
	imp.EmailVerified = m.TrustEmail && imp.Email != ""
	impersonated := imp.ID != ""
	if m.Impersonated != "" {
		impersonated = c.Bool(m.Impersonated)
	}
	if !impersonated {
		// nil, as the other mappings answer: callers read a non-nil Impersonator as impersonation.
		return nil, false
	}
	return imp, true
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
