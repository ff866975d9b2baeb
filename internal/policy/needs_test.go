package policy

import (
	"slices"
	"testing"
)

func TestNeedsNameWhatRulesRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rules AllowRules
		want  Needs
	}{
		{"no rules read nothing", AllowRules{}, Needs{}},
		{"lists of emails and groups read the standard identity only", AllowRules{Emails: []string{"a@example.com"}, Groups: []string{"g"}}, Needs{}},
		{"a claim rule reads its claim", AllowRules{Claims: []ClaimRule{{Claim: "department", Values: []string{"x"}}}}, Needs{Claims: []string{"department"}}},
		{"a dotted claim rule keeps the whole name and its first segment",
			AllowRules{Claims: []ClaimRule{{Claim: "https://example.com/roles", Values: []string{"x"}}}},
			Needs{Claims: []string{"https://example.com/roles", "https://example"}}},
		{"selecting a claim reads it", AllowRules{Expression: `"staff" in claims.roles && has(claims.level)`}, Needs{Claims: []string{"roles", "level"}}},
		{"indexing with a constant reads that claim", AllowRules{Expression: `claims["https://example.com/tier"] == "gold"`}, Needs{Claims: []string{"https://example.com/tier"}}},
		{"a nested selection reads its top-level claim", AllowRules{Expression: `claims.org.unit == "R&D"`}, Needs{Claims: []string{"org"}}},
		{"the request makes every decision its own", AllowRules{Expression: `request.path.startsWith("/admin")`}, Needs{Request: true}},
		{"asking whether a key is in the claims reads them all", AllowRules{Expression: `"roles" in claims`}, Needs{All: true}},
		{"iterating the claims reads them all", AllowRules{Expression: `claims.all(k, k != "x")`}, Needs{All: true}},
		{"a computed index reads them all", AllowRules{Expression: `claims[request.host] == "x"`}, Needs{Request: true, All: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewAllow(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			got := p.Needs()
			if got.Request != tc.want.Request || got.All != tc.want.All || !slices.Equal(got.Claims, tc.want.Claims) {
				t.Fatalf("Needs = %+v, want %+v", got, tc.want)
			}
		})
	}
	imp, err := NewImpersonation(ImpersonationRules{Protect: []string{"ceo@example.com"},
		Expression: `!("admin" in target.roles) && request.method == "GET"`})
	if err != nil {
		t.Fatal(err)
	}
	if n := imp.Needs(); !n.Request || n.All || !slices.Equal(n.Claims, []string{"email", "roles"}) {
		t.Errorf("impersonation Needs = %+v, want the email (protect), roles and the request", n)
	}
	if (*Allow)(nil).Needs().Request {
		t.Error("a nil policy reads the request")
	}
}
