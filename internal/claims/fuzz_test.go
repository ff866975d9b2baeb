package claims

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzMappingDetect feeds arbitrary JSON claim sets to every impersonation mapping: none may
// panic, an impersonator is returned exactly when impersonation is reported, and rendered
// values never carry a character that could split a header.
func FuzzMappingDetect(f *testing.F) {
	for _, seed := range []string{
		`{"sub":"a","impersonated":true,"impersonator":{"user_id":"auth0|admin","email":"admin@example.com"}}`,
		`{"sub":"a","https://example.com/impersonated":true,"https://example.com/impersonator":{"user_id":"x"}}`,
		`{"sub":"a","impersonator":{"id":"kc","username":"root"}}`,
		`{"sub":"a","act":{"sub":"admin","act":{"sub":"deeper"}}}`,
		`{"sub":"a","acting":{"id":["x",1,true,null,{"k":"v"}]},"flag":"true"}`,
		`{"impersonated":"yes","impersonator":"string"}`,
		`{"act":[],"impersonator":null}`,
		`[]`, `null`, `{"a":{"b":{"c":"\u0000\r\n"}}}`,
	} {
		f.Add(seed)
	}
	mappings := []Mapping{{Mode: ModeAuto}, {Mode: ModeAuth0, Namespace: "https://example.com/"}, {Mode: ModeKeycloak},
		{Mode: ModeAct}, {Mode: ModeCustom, Impersonated: "flag", ImpersonatorID: "acting.id", ImpersonatorEmail: "acting.email"},
		{Mode: ModeCustom, ImpersonatorID: "a.b.c"}}
	f.Fuzz(func(t *testing.T, doc string) {
		var c Set
		if json.Unmarshal([]byte(doc), &c) != nil {
			return
		}
		for _, m := range mappings {
			imp, ok := m.Detect(c)
			if ok != (imp != nil) {
				t.Fatalf("%v: impersonated %v with impersonator %+v", m.Mode, ok, imp)
			}
			if imp != nil && strings.ContainsAny(imp.ID, "\r\n\x00") && m.Mode == ModeCustom {
				t.Fatalf("custom mapping rendered an ID with control characters: %q", imp.ID)
			}
		}
		for k := range c {
			v, _ := c.Lookup(k)
			if r := Render(v); strings.ContainsAny(r, "\r\n\x00\x7f") {
				t.Fatalf("Render(%v) = %q carries a control character", v, r)
			}
		}
		_ = NewIdentity(c, "groups")
	})
}
