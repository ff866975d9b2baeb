package policy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// newTestAllow compiles rules as the module does: no rules at all is a nil policy.
func newTestAllow(r *AllowRules) (*Allow, error) {
	if r == nil {
		return nil, nil
	}
	return NewAllow(*r)
}

// person is an identity as identify builds it from claims.
func person(c claims.Set) *claims.Identity {
	return claims.NewIdentity(c, "groups")
}

var unitRequest = map[string]any{"host": "app.example.com", "method": "GET", "path": "/oauth2/callback", "remote_ip": "203.0.113.9"}

func TestAllowAdmitsOnlyWhoEveryCategoryAdmits(t *testing.T) {
	alice := claims.Set{"sub": "auth0|alice", "email": "Alice@Example.com", "email_verified": true,
		"groups": []any{"staff", "admins"}, "roles": []any{"staff", "dev"}, "department": "engineering",
		"level": float64(3), "contractor": false, "org": map[string]any{"unit": "R&D"}}
	unverified := claims.Set{"sub": "auth0|mallory", "email": "alice@example.com", "email_verified": false}
	noEmail := claims.Set{"sub": "auth0|noemail", "email_verified": true}
	subdomain := claims.Set{"sub": "auth0|s", "email": "bob@sub.example.com", "email_verified": true}
	lookalike := claims.Set{"sub": "auth0|l", "email": "bob@evilexample.com", "email_verified": true}
	verifiedAsString := claims.Set{"sub": "auth0|v", "email": "bob@example.com", "email_verified": "true"}
	for _, tc := range []struct {
		name       string
		cfg        *AllowRules
		who        claims.Set
		wantOK     bool
		wantReason string
	}{
		{"without allow everyone is admitted", nil, unverified, true, ""},
		{"an empty allow block admits everyone", &AllowRules{}, unverified, true, ""},
		{"a listed verified email is admitted, whatever its case", &AllowRules{Emails: []string{"alice@EXAMPLE.com"}}, alice, true, ""},
		{"a listed but unverified email is refused", &AllowRules{Emails: []string{"alice@example.com"}}, unverified, false, "email not allowed"},
		{"a user without email is refused by an email rule", &AllowRules{Emails: []string{"alice@example.com"}}, noEmail, false, "email not allowed"},
		{"an unlisted email is refused", &AllowRules{Emails: []string{"bob@example.com"}}, alice, false, "email not allowed"},
		{"an email at a listed domain is admitted, whatever its case", &AllowRules{Domains: []string{"EXAMPLE.COM"}}, alice, true, ""},
		{"a subdomain is not the listed domain", &AllowRules{Domains: []string{"example.com"}}, subdomain, false, "email not allowed"},
		{"a lookalike domain is not the listed domain", &AllowRules{Domains: []string{"example.com"}}, lookalike, false, "email not allowed"},
		{"an unverified email at a listed domain is refused", &AllowRules{Domains: []string{"example.com"}}, unverified, false, "email not allowed"},
		{"email_verified sent as the string true counts as verified", &AllowRules{Domains: []string{"example.com"}}, verifiedAsString, true, ""},
		{"emails and domains together: either admits", &AllowRules{Emails: []string{"bob@sub.example.com"}, Domains: []string{"example.org"}}, subdomain, true, ""},
		{"a member of a listed group is admitted", &AllowRules{Groups: []string{"nobody", "admins"}}, alice, true, ""},
		{"a non-member is refused", &AllowRules{Groups: []string{"finance"}}, alice, false, "not in an allowed group"},
		{"groups are compared exactly", &AllowRules{Groups: []string{"Admins"}}, alice, false, "not in an allowed group"},
		{"a user without a groups claim is refused, saying the claim is absent", &AllowRules{Groups: []string{"staff"}}, noEmail, false, "groups claim absent (groups_claim groups)"},
		{"an empty groups claim is present: not in an allowed group", &AllowRules{Groups: []string{"staff"}},
			claims.Set{"sub": "auth0|nogroups", "groups": []any{}}, false, "not in an allowed group"},
		{"the absent claim is named as groups_claim names it", &AllowRules{Groups: []string{"staff"}, GroupsClaim: "https://example.com/roles"},
			noEmail, false, "groups claim absent (groups_claim https://example.com/roles)"},
		{"a scalar claim with a listed value is admitted", &AllowRules{Claims: []ClaimRule{{"department", []string{"sales", "engineering"}}}}, alice, true, ""},
		{"a scalar claim with another value is refused", &AllowRules{Claims: []ClaimRule{{"department", []string{"sales"}}}}, alice, false, "claim department not allowed"},
		{"a list claim with a listed element is admitted", &AllowRules{Claims: []ClaimRule{{"roles", []string{"dev"}}}}, alice, true, ""},
		{"a list claim without a listed element is refused", &AllowRules{Claims: []ClaimRule{{"roles", []string{"ops"}}}}, alice, false, "claim roles not allowed"},
		{"a numeric claim matches its rendering", &AllowRules{Claims: []ClaimRule{{"level", []string{"3"}}}}, alice, true, ""},
		{"a boolean claim matches its rendering", &AllowRules{Claims: []ClaimRule{{"contractor", []string{"false"}}}}, alice, true, ""},
		{"a nested claim is found by its dotted path", &AllowRules{Claims: []ClaimRule{{"org.unit", []string{"R&D"}}}}, alice, true, ""},
		{"a missing claim is refused", &AllowRules{Claims: []ClaimRule{{"clearance", []string{"top"}}}}, alice, false, "claim clearance not allowed"},
		{"claim values are compared exactly", &AllowRules{Claims: []ClaimRule{{"department", []string{"Engineering"}}}}, alice, false, "claim department not allowed"},
		{"every claim rule must admit", &AllowRules{Claims: []ClaimRule{{"department", []string{"engineering"}}, {"roles", []string{"ops"}}}}, alice, false, "claim roles not allowed"},
		{"an email that admits does not outweigh a group that refuses",
			&AllowRules{Emails: []string{"alice@example.com"}, Groups: []string{"finance"}}, alice, false, "not in an allowed group"},
		{"a group that admits does not outweigh an email that refuses",
			&AllowRules{Emails: []string{"bob@example.com"}, Groups: []string{"staff"}}, alice, false, "email not allowed"},
		{"every category admitting admits",
			&AllowRules{Emails: []string{"alice@example.com"}, Groups: []string{"staff"},
				Claims: []ClaimRule{{"department", []string{"engineering"}}}, Expression: `"staff" in claims.roles`}, alice, true, ""},
		{"a true expression admits", &AllowRules{Expression: `"staff" in claims.roles`}, alice, true, ""},
		{"a false expression refuses", &AllowRules{Expression: `"ops" in claims.roles`}, alice, false, "expression denied"},
		{"an expression over the request admits", &AllowRules{Expression: `request.host == "app.example.com" && request.method == "GET"`}, alice, true, ""},
		{"an expression over a nested claim admits", &AllowRules{Expression: `claims.org.unit == "R&D"`}, alice, true, ""},
		{"an expression that errors on a missing key refuses with the error", &AllowRules{Expression: `claims.clearance == "top"`}, alice, false, "expression error: no such key: clearance"},
		{"an expression that errors on a wrong type refuses with the error", &AllowRules{Expression: `claims.level > "2"`}, alice, false, "expression error: no such overload"},
		{"the expression must hold even when the rules admit",
			&AllowRules{Groups: []string{"staff"}, Expression: `"ops" in claims.roles`}, alice, false, "expression denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newTestAllow(tc.cfg)
			if err != nil {
				t.Fatalf("NewAllow: %v", err)
			}
			ok, reason := p.Admit(context.Background(), person(tc.who), unitRequest)
			if ok != tc.wantOK || reason != tc.wantReason {
				t.Fatalf("admit = (%v, %q), want (%v, %q)", ok, reason, tc.wantOK, tc.wantReason)
			}
		})
	}
}

func TestNewAllowPolicyRefusesBadRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AllowRules
		want string // the error starts with this
	}{
		{"an expression that does not compile is refused", AllowRules{Expression: `claims.roles ===`},
			`expression "claims.roles ===" does not compile: `},
		{"an expression over an unknown variable is refused", AllowRules{Expression: `user.email == "a"`},
			`expression "user.email == \"a\"" does not compile: `},
		{"a string expression is refused as not boolean", AllowRules{Expression: `"yes"`},
			`expression "\"yes\"" is string, not boolean`},
		{"an arithmetic expression is refused as not boolean", AllowRules{Expression: `1 + 1`},
			`expression "1 + 1" is int, not boolean`},
		{"a bare claim is refused as not boolean", AllowRules{Expression: `claims.email_verified`},
			`expression "claims.email_verified" is dyn, not boolean`},
		{"a claim rule without values is refused", AllowRules{Claims: []ClaimRule{{Claim: "department"}}},
			"claim needs a name and at least one value"},
		{"a claim rule without a name is refused", AllowRules{Claims: []ClaimRule{{Values: []string{"x"}}}},
			"claim needs a name and at least one value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewAllow(tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("NewAllow = (%v, %v), want an error starting %q", p, err, tc.want)
			}
			if p != nil {
				t.Errorf("a policy was returned with the error")
			}
		})
	}
}

func TestAnExpensiveExpressionIsStoppedAndDenies(t *testing.T) {
	p, err := NewAllow(AllowRules{Expression: `claims.items.all(a, claims.items.all(b, claims.items.all(c, a + b + c >= 0)))`})
	if err != nil {
		t.Fatalf("NewAllow: %v", err)
	}
	items := make([]any, 200)
	for i := range items {
		items[i] = float64(i)
	}
	ok, reason := p.Admit(context.Background(), person(claims.Set{"sub": "s", "items": items}), unitRequest)
	if want := "expression error: operation cancelled: actual cost limit exceeded"; ok || reason != want {
		t.Fatalf("admit = (%v, %q), want (false, %q) by the cost limit", ok, reason, want)
	}
}

// impersonated is a target identity with an impersonator.
func impersonated(target claims.Set, imp *claims.Impersonator) *claims.Identity {
	id := person(target)
	id.Imp = imp
	return id
}

func TestImpersonationPolicyDecides(t *testing.T) {
	admin := &claims.Impersonator{ID: "auth0|admin", Email: "admin@example.com"} // Auth0's: no verification
	vouched := &claims.Impersonator{ID: "auth0|admin", Email: "admin@example.com", EmailVerified: true}
	fake := &claims.Impersonator{ID: "auth0|fakeadmin", Email: "admin@example.com"}
	lookalike := &claims.Impersonator{ID: "auth0|other", Email: "adm\u0130n@example.com", EmailVerified: true}
	upper := &claims.Impersonator{ID: "auth0|ADMIN"}
	support := &claims.Impersonator{ID: "auth0|support", Email: "support@example.com"}
	kcAdmin := &claims.Impersonator{ID: "kc-0001", Username: "root"}
	alice := claims.Set{"sub": "auth0|alice", "email": "alice@example.com", "roles": []any{"user"}}
	ceo := claims.Set{"sub": "auth0|ceo", "email": "CEO@example.com", "roles": []any{"user"}}
	vip := claims.Set{"sub": "auth0|vip", "email": "vip@example-admins.com"}
	boss := claims.Set{"sub": "auth0|boss", "email": "boss@example.com", "roles": []any{"admin"}}
	subCEO := claims.Set{"sub": "auth0|subceo", "email": "ceo@sub.example.com"}
	noRoles := claims.Set{"sub": "auth0|noroles", "email": "noroles@example.com"}
	for _, tc := range []struct {
		name       string
		cfg        ImpersonationRules
		target     *claims.Identity
		wantOK     bool
		wantReason string
	}{
		{"without an allowlist any named impersonator may", ImpersonationRules{}, impersonated(alice, support), true, ""},
		{"an impersonator listed by a verified email may, whatever its ASCII case", ImpersonationRules{Impersonators: []string{"Admin@Example.com"}}, impersonated(alice, vouched), true, ""},
		{"an unverified email never matches the list", ImpersonationRules{Impersonators: []string{"admin@example.com"}}, impersonated(alice, fake), false, "impersonator not allowed"},
		{"Auth0's impersonator email (unverified) does not match either", ImpersonationRules{Impersonators: []string{"admin@example.com"}}, impersonated(alice, admin), false, "impersonator not allowed"},
		{"a Unicode lookalike of a listed email does not match", ImpersonationRules{Impersonators: []string{"admin@example.com"}}, impersonated(alice, lookalike), false, "impersonator not allowed"},
		{"subjects are compared exactly", ImpersonationRules{Impersonators: []string{"auth0|admin"}}, impersonated(alice, upper), false, "impersonator not allowed"},
		{"an impersonation signal the mode does not read is refused", ImpersonationRules{}, impersonated(alice, &claims.Impersonator{Unread: "act"}), false, "impersonation shown the act way, which the claims mode does not read"},
		{"an impersonator listed by sub may", ImpersonationRules{Impersonators: []string{"auth0|admin"}}, impersonated(alice, admin), true, ""},
		{"a username on the list does not admit (usernames may be editable)", ImpersonationRules{Impersonators: []string{"root"}}, impersonated(alice, kcAdmin), false, "impersonator not allowed"},
		{"an unlisted impersonator may not", ImpersonationRules{Impersonators: []string{"admin@example.com"}}, impersonated(alice, support), false, "impersonator not allowed"},
		{"an impersonator without id or email is unknown", ImpersonationRules{}, impersonated(alice, &claims.Impersonator{}), false, "impersonator unknown"},
		{"an identity without an impersonator is unknown", ImpersonationRules{}, impersonated(alice, nil), false, "impersonator unknown"},
		{"an impersonator known only by username is unknown", ImpersonationRules{}, impersonated(alice, &claims.Impersonator{Username: "root"}), false, "impersonator unknown"},
		{"a target protected by email is refused, whatever its case", ImpersonationRules{Protect: []string{"ceo@EXAMPLE.com"}}, impersonated(ceo, admin), false, "target is protected"},
		{"a target protected by sub is refused", ImpersonationRules{Protect: []string{"auth0|ceo"}}, impersonated(ceo, admin), false, "target is protected"},
		{"a protected sub is compared exactly", ImpersonationRules{Protect: []string{"auth0|CEO"}}, impersonated(ceo, admin), true, ""},
		{"a listed domain does not cover its subdomains", ImpersonationRules{Protect: []string{"example.com"}}, impersonated(subCEO, admin), true, ""},
		{"a .domain entry covers every subdomain", ImpersonationRules{Protect: []string{".example.com"}}, impersonated(subCEO, admin), false, "target is protected"},
		{"a .domain entry does not cover a lookalike", ImpersonationRules{Protect: []string{".example.com"}}, impersonated(vip, admin), true, ""},
		{"a target protected by domain is refused", ImpersonationRules{Protect: []string{"example-admins.com"}}, impersonated(vip, admin), false, "target is protected"},
		{"an unprotected target is allowed", ImpersonationRules{Protect: []string{"ceo@example.com", "example-admins.com"}}, impersonated(alice, admin), true, ""},
		{"protecting a domain does not protect its subdomains' lookalikes", ImpersonationRules{Protect: []string{"admins.com"}}, impersonated(vip, admin), true, ""},
		{"an allowed impersonator still may not take a protected target",
			ImpersonationRules{Impersonators: []string{"admin@example.com"}, Protect: []string{"ceo@example.com"}}, impersonated(ceo, vouched), false, "target is protected"},
		{"the spec's expression allows a staff impersonator on a plain user",
			ImpersonationRules{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(alice, vouched), true, ""},
		{"expressions never see an unverified impersonator email",
			ImpersonationRules{Expression: `impersonator.email.endsWith("@example.com")`}, impersonated(alice, fake), false, "expression denied"},
		{"the spec's expression refuses an admin target",
			ImpersonationRules{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(boss, admin), false, "expression denied"},
		{"the spec's expression refuses a target without roles (a runtime error)",
			ImpersonationRules{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(noRoles, vouched), false, "expression error: no such key: roles"},
		{"an expression sees the target's id", ImpersonationRules{Expression: `target.id != "auth0|alice"`}, impersonated(alice, admin), false, "expression denied"},
		{"an expression sees the request", ImpersonationRules{Expression: `request.path == "/oauth2/callback" && request.remote_ip == "203.0.113.9"`}, impersonated(alice, admin), true, ""},
		{"an expression sees the impersonator's id", ImpersonationRules{Expression: `impersonator.id == "auth0|support"`}, impersonated(alice, admin), false, "expression denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewImpersonation(tc.cfg)
			if err != nil {
				t.Fatalf("NewImpersonation: %v", err)
			}
			ok, reason := p.Decide(context.Background(), tc.target, unitRequest)
			if ok != tc.wantOK || reason != tc.wantReason {
				t.Fatalf("decide = (%v, %q), want (%v, %q)", ok, reason, tc.wantOK, tc.wantReason)
			}
		})
	}
}

func TestExpressionsNeverSeeAnUnverifiedEmail(t *testing.T) {
	p, err := NewAllow(AllowRules{Expression: `claims.email.endsWith("@example.com")`})
	if err != nil {
		t.Fatal(err)
	}
	for _, verified := range []bool{true, false} {
		id := &claims.Identity{Claims: claims.Set{"sub": "u", "email": "ceo@example.com", "email_verified": verified},
			Subject: "u", Email: "ceo@example.com", EmailVerified: verified}
		if ok, _ := p.Admit(context.Background(), id, nil); ok != verified {
			t.Errorf("email_verified %v: admitted %v", verified, ok)
		}
	}
}

func TestListedEmailsAndDomainsMustBeASCII(t *testing.T) {
	t.Parallel()
	if _, err := NewImpersonation(ImpersonationRules{Impersonators: []string{"adm\u0130n@example.com"}}); err == nil {
		t.Error("a non-ASCII impersonator email was accepted")
	}
	if _, err := NewImpersonation(ImpersonationRules{Protect: []string{".exämple.com"}}); err == nil {
		t.Error("a non-ASCII protected domain was accepted")
	}
	if _, err := NewImpersonation(ImpersonationRules{Impersonators: []string{"kc-ünïcode-id"}, Protect: []string{"sub-ü"}}); err != nil {
		t.Errorf("a non-ASCII subject is a subject, compared exactly: %v", err)
	}
	if _, err := NewAllow(AllowRules{Emails: []string{"ceo@exämple.com"}}); err == nil {
		t.Error("a non-ASCII allowed email was accepted")
	}
	if _, err := NewAllow(AllowRules{Domains: []string{"xn--exmple-cua.com"}}); err != nil {
		t.Errorf("a punycode domain was refused: %v", err)
	}
}

func TestAllowComparesEmailsWithASCIIFoldingOnly(t *testing.T) {
	t.Parallel()
	p, err := NewAllow(AllowRules{Emails: []string{"admin@example.com"}, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		email string
		want  bool
	}{{"ADMIN@Example.COM", true}, {"adm\u0130n@example.com", false}, {"bob@CORP.EXAMPLE", true}, {"bob@corp.exampl\u0130", false}} {
		id := &claims.Identity{Subject: "s", Email: tc.email, EmailVerified: true}
		if ok, _ := p.Admit(context.Background(), id, nil); ok != tc.want {
			t.Errorf("%q admitted %v, want %v", tc.email, ok, tc.want)
		}
	}
}

func TestScopesMustAllBeGranted(t *testing.T) {
	t.Parallel()
	p, err := NewAllow(AllowRules{Scopes: []string{"read:reports", "write:reports"}, Groups: []string{"staff"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		granted     []string
		groups      []string
		wantOK      bool
		wantReason  string
		wantMissing []string
	}{
		{"every scope granted, in any order, among others", []string{"openid", "write:reports", "read:reports"}, []string{"staff"}, true, "", nil},
		{"one scope missing", []string{"read:reports"}, []string{"staff"}, false, "missing scope write:reports", []string{"write:reports"}},
		{"no scope at all", nil, []string{"staff"}, false, "missing scope read:reports write:reports", []string{"read:reports", "write:reports"}},
		{"scopes are compared exactly", []string{"READ:reports", "write:reports"}, []string{"staff"}, false, "missing scope read:reports", []string{"read:reports"}},
		{"scopes do not stand in for the other rules", []string{"read:reports", "write:reports"}, nil, false, "groups claim absent (groups_claim groups)", nil},
	} {
		id := &claims.Identity{Subject: "s", Scopes: tc.granted, Groups: tc.groups}
		ok, why := p.Admit(context.Background(), id, nil)
		if ok != tc.wantOK || why != tc.wantReason {
			t.Errorf("%s: Admit = %v %q, want %v %q", tc.name, ok, why, tc.wantOK, tc.wantReason)
		}
		if got := p.MissingScopes(tc.granted); !slices.Equal(got, tc.wantMissing) {
			t.Errorf("%s: MissingScopes = %q, want %q", tc.name, got, tc.wantMissing)
		}
	}
	for _, bad := range []string{"", "read reports", `read"x`, `a\b`, "tab\there"} {
		if _, err := NewAllow(AllowRules{Scopes: []string{bad}}); err == nil {
			t.Errorf("scope %q was accepted", bad)
		}
	}
}
