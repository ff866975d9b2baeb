package caddymodule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func durationOf(d time.Duration) caddy.Duration { return caddy.Duration(d) }

// person is an identity as identify builds it from claims.
func person(c claims) *identity {
	return &identity{
		claims:        c,
		subject:       c.str("sub"),
		email:         c.str("email"),
		emailVerified: c.boolean("email_verified"),
		name:          c.str("name"),
		username:      c.str("preferred_username"),
		groups:        c.strings("groups"),
	}
}

var unitRequest = map[string]any{"host": "app.example.com", "method": "GET", "path": "/oauth2/callback", "remote_ip": "203.0.113.9"}

func TestAllowAdmitsOnlyWhoEveryCategoryAdmits(t *testing.T) {
	alice := claims{"sub": "auth0|alice", "email": "Alice@Example.com", "email_verified": true,
		"groups": []any{"staff", "admins"}, "roles": []any{"staff", "dev"}, "department": "engineering",
		"level": float64(3), "contractor": false, "org": map[string]any{"unit": "R&D"}}
	unverified := claims{"sub": "auth0|mallory", "email": "alice@example.com", "email_verified": false}
	noEmail := claims{"sub": "auth0|noemail", "email_verified": true}
	subdomain := claims{"sub": "auth0|s", "email": "bob@sub.example.com", "email_verified": true}
	lookalike := claims{"sub": "auth0|l", "email": "bob@evilexample.com", "email_verified": true}
	verifiedAsString := claims{"sub": "auth0|v", "email": "bob@example.com", "email_verified": "true"}
	for _, tc := range []struct {
		name       string
		cfg        *AllowConfig
		who        claims
		wantOK     bool
		wantReason string
	}{
		{"without allow everyone is admitted", nil, unverified, true, ""},
		{"an empty allow block admits everyone", &AllowConfig{}, unverified, true, ""},
		{"a listed verified email is admitted, whatever its case", &AllowConfig{Emails: []string{"alice@EXAMPLE.com"}}, alice, true, ""},
		{"a listed but unverified email is refused", &AllowConfig{Emails: []string{"alice@example.com"}}, unverified, false, "email not allowed"},
		{"a user without email is refused by an email rule", &AllowConfig{Emails: []string{"alice@example.com"}}, noEmail, false, "email not allowed"},
		{"an unlisted email is refused", &AllowConfig{Emails: []string{"bob@example.com"}}, alice, false, "email not allowed"},
		{"an email at a listed domain is admitted, whatever its case", &AllowConfig{Domains: []string{"EXAMPLE.COM"}}, alice, true, ""},
		{"a subdomain is not the listed domain", &AllowConfig{Domains: []string{"example.com"}}, subdomain, false, "email not allowed"},
		{"a lookalike domain is not the listed domain", &AllowConfig{Domains: []string{"example.com"}}, lookalike, false, "email not allowed"},
		{"an unverified email at a listed domain is refused", &AllowConfig{Domains: []string{"example.com"}}, unverified, false, "email not allowed"},
		{"email_verified sent as the string true counts as verified", &AllowConfig{Domains: []string{"example.com"}}, verifiedAsString, true, ""},
		{"emails and domains together: either admits", &AllowConfig{Emails: []string{"bob@sub.example.com"}, Domains: []string{"example.org"}}, subdomain, true, ""},
		{"a member of a listed group is admitted", &AllowConfig{Groups: []string{"nobody", "admins"}}, alice, true, ""},
		{"a non-member is refused", &AllowConfig{Groups: []string{"finance"}}, alice, false, "not in an allowed group"},
		{"groups are compared exactly", &AllowConfig{Groups: []string{"Admins"}}, alice, false, "not in an allowed group"},
		{"a user without groups is refused by a group rule", &AllowConfig{Groups: []string{"staff"}}, noEmail, false, "not in an allowed group"},
		{"a scalar claim with a listed value is admitted", &AllowConfig{Claims: []ClaimRule{{"department", []string{"sales", "engineering"}}}}, alice, true, ""},
		{"a scalar claim with another value is refused", &AllowConfig{Claims: []ClaimRule{{"department", []string{"sales"}}}}, alice, false, "claim department not allowed"},
		{"a list claim with a listed element is admitted", &AllowConfig{Claims: []ClaimRule{{"roles", []string{"dev"}}}}, alice, true, ""},
		{"a list claim without a listed element is refused", &AllowConfig{Claims: []ClaimRule{{"roles", []string{"ops"}}}}, alice, false, "claim roles not allowed"},
		{"a numeric claim matches its rendering", &AllowConfig{Claims: []ClaimRule{{"level", []string{"3"}}}}, alice, true, ""},
		{"a boolean claim matches its rendering", &AllowConfig{Claims: []ClaimRule{{"contractor", []string{"false"}}}}, alice, true, ""},
		{"a nested claim is found by its dotted path", &AllowConfig{Claims: []ClaimRule{{"org.unit", []string{"R&D"}}}}, alice, true, ""},
		{"a missing claim is refused", &AllowConfig{Claims: []ClaimRule{{"clearance", []string{"top"}}}}, alice, false, "claim clearance not allowed"},
		{"claim values are compared exactly", &AllowConfig{Claims: []ClaimRule{{"department", []string{"Engineering"}}}}, alice, false, "claim department not allowed"},
		{"every claim rule must admit", &AllowConfig{Claims: []ClaimRule{{"department", []string{"engineering"}}, {"roles", []string{"ops"}}}}, alice, false, "claim roles not allowed"},
		{"an email that admits does not outweigh a group that refuses",
			&AllowConfig{Emails: []string{"alice@example.com"}, Groups: []string{"finance"}}, alice, false, "not in an allowed group"},
		{"a group that admits does not outweigh an email that refuses",
			&AllowConfig{Emails: []string{"bob@example.com"}, Groups: []string{"staff"}}, alice, false, "email not allowed"},
		{"every category admitting admits",
			&AllowConfig{Emails: []string{"alice@example.com"}, Groups: []string{"staff"},
				Claims: []ClaimRule{{"department", []string{"engineering"}}}, Expression: `"staff" in claims.roles`}, alice, true, ""},
		{"a true expression admits", &AllowConfig{Expression: `"staff" in claims.roles`}, alice, true, ""},
		{"a false expression refuses", &AllowConfig{Expression: `"ops" in claims.roles`}, alice, false, "expression denied"},
		{"an expression over the request admits", &AllowConfig{Expression: `request.host == "app.example.com" && request.method == "GET"`}, alice, true, ""},
		{"an expression over a nested claim admits", &AllowConfig{Expression: `claims.org.unit == "R&D"`}, alice, true, ""},
		{"an expression that errors on a missing key refuses", &AllowConfig{Expression: `claims.clearance == "top"`}, alice, false, "expression denied"},
		{"an expression that errors on a wrong type refuses", &AllowConfig{Expression: `claims.level > "2"`}, alice, false, "expression denied"},
		{"the expression must hold even when the rules admit",
			&AllowConfig{Groups: []string{"staff"}, Expression: `"ops" in claims.roles`}, alice, false, "expression denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newAllowPolicy(tc.cfg)
			if err != nil {
				t.Fatalf("newAllowPolicy: %v", err)
			}
			ok, reason := p.admit(context.Background(), person(tc.who), unitRequest)
			if ok != tc.wantOK || reason != tc.wantReason {
				t.Fatalf("admit = (%v, %q), want (%v, %q)", ok, reason, tc.wantOK, tc.wantReason)
			}
		})
	}
}

func TestNewAllowPolicyRefusesBadRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AllowConfig
		want string // the error starts with this
	}{
		{"an expression that does not compile is refused", AllowConfig{Expression: `claims.roles ===`},
			`expression "claims.roles ===" does not compile: `},
		{"an expression over an unknown variable is refused", AllowConfig{Expression: `user.email == "a"`},
			`expression "user.email == \"a\"" does not compile: `},
		{"a string expression is refused as not boolean", AllowConfig{Expression: `"yes"`},
			`expression "\"yes\"" is string, not boolean`},
		{"an arithmetic expression is refused as not boolean", AllowConfig{Expression: `1 + 1`},
			`expression "1 + 1" is int, not boolean`},
		{"a bare claim is refused as not boolean", AllowConfig{Expression: `claims.email_verified`},
			`expression "claims.email_verified" is dyn, not boolean`},
		{"a claim rule without values is refused", AllowConfig{Claims: []ClaimRule{{Claim: "department"}}},
			"claim needs a name and at least one value"},
		{"a claim rule without a name is refused", AllowConfig{Claims: []ClaimRule{{Values: []string{"x"}}}},
			"claim needs a name and at least one value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newAllowPolicy(&tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("newAllowPolicy = (%v, %v), want an error starting %q", p, err, tc.want)
			}
			if p != nil {
				t.Errorf("a policy was returned with the error")
			}
		})
	}
}

func TestAnExpensiveExpressionIsStoppedAndDenies(t *testing.T) {
	p, err := newAllowPolicy(&AllowConfig{Expression: `claims.items.all(a, claims.items.all(b, claims.items.all(c, a + b + c >= 0)))`})
	if err != nil {
		t.Fatalf("newAllowPolicy: %v", err)
	}
	items := make([]any, 200)
	for i := range items {
		items[i] = float64(i)
	}
	ok, reason := p.admit(context.Background(), person(claims{"sub": "s", "items": items}), unitRequest)
	if ok || reason != "expression denied" {
		t.Fatalf("admit = (%v, %q), want (false, expression denied) by the cost limit", ok, reason)
	}
}

// impersonated is a target identity with an impersonator.
func impersonated(target claims, imp *impersonator) *identity {
	id := person(target)
	id.imp = imp
	return id
}

func TestImpersonationPolicyDecides(t *testing.T) {
	admin := &impersonator{ID: "auth0|admin", Email: "admin@example.com"}
	support := &impersonator{ID: "auth0|support", Email: "support@example.com"}
	kcAdmin := &impersonator{ID: "kc-0001", Username: "root"}
	alice := claims{"sub": "auth0|alice", "email": "alice@example.com", "roles": []any{"user"}}
	ceo := claims{"sub": "auth0|ceo", "email": "CEO@example.com", "roles": []any{"user"}}
	vip := claims{"sub": "auth0|vip", "email": "vip@example-admins.com"}
	boss := claims{"sub": "auth0|boss", "email": "boss@example.com", "roles": []any{"admin"}}
	noRoles := claims{"sub": "auth0|noroles", "email": "noroles@example.com"}
	for _, tc := range []struct {
		name       string
		cfg        ImpersonationConfig
		target     *identity
		wantOK     bool
		wantReason string
	}{
		{"without an allowlist any named impersonator may", ImpersonationConfig{}, impersonated(alice, support), true, ""},
		{"an impersonator listed by email may, whatever its case", ImpersonationConfig{Impersonators: []string{"Admin@Example.com"}}, impersonated(alice, admin), true, ""},
		{"an impersonator listed by sub may", ImpersonationConfig{Impersonators: []string{"auth0|admin"}}, impersonated(alice, admin), true, ""},
		{"a username on the list does not admit (usernames may be editable)", ImpersonationConfig{Impersonators: []string{"root"}}, impersonated(alice, kcAdmin), false, "impersonator not allowed"},
		{"an unlisted impersonator may not", ImpersonationConfig{Impersonators: []string{"admin@example.com"}}, impersonated(alice, support), false, "impersonator not allowed"},
		{"an impersonator without id or email is unknown", ImpersonationConfig{}, impersonated(alice, &impersonator{}), false, "impersonator unknown"},
		{"an identity without an impersonator is unknown", ImpersonationConfig{}, impersonated(alice, nil), false, "impersonator unknown"},
		{"an impersonator known only by username is unknown", ImpersonationConfig{}, impersonated(alice, &impersonator{Username: "root"}), false, "impersonator unknown"},
		{"a target protected by email is refused, whatever its case", ImpersonationConfig{Protect: []string{"ceo@EXAMPLE.com"}}, impersonated(ceo, admin), false, "target is protected"},
		{"a target protected by sub is refused", ImpersonationConfig{Protect: []string{"auth0|CEO"}}, impersonated(ceo, admin), false, "target is protected"},
		{"a target protected by domain is refused", ImpersonationConfig{Protect: []string{"example-admins.com"}}, impersonated(vip, admin), false, "target is protected"},
		{"an unprotected target is allowed", ImpersonationConfig{Protect: []string{"ceo@example.com", "example-admins.com"}}, impersonated(alice, admin), true, ""},
		{"protecting a domain does not protect its subdomains' lookalikes", ImpersonationConfig{Protect: []string{"admins.com"}}, impersonated(vip, admin), true, ""},
		{"an allowed impersonator still may not take a protected target",
			ImpersonationConfig{Impersonators: []string{"admin@example.com"}, Protect: []string{"ceo@example.com"}}, impersonated(ceo, admin), false, "target is protected"},
		{"the spec's expression allows a staff impersonator on a plain user",
			ImpersonationConfig{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(alice, admin), true, ""},
		{"the spec's expression refuses an admin target",
			ImpersonationConfig{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(boss, admin), false, "expression denied"},
		{"the spec's expression refuses a target without roles (a runtime error)",
			ImpersonationConfig{Expression: `impersonator.email.endsWith("@example.com") && !("admin" in target.roles)`}, impersonated(noRoles, admin), false, "expression denied"},
		{"an expression sees the target's id", ImpersonationConfig{Expression: `target.id != "auth0|alice"`}, impersonated(alice, admin), false, "expression denied"},
		{"an expression sees the request", ImpersonationConfig{Expression: `request.path == "/oauth2/callback" && request.remote_ip == "203.0.113.9"`}, impersonated(alice, admin), true, ""},
		{"an expression sees the impersonator's id", ImpersonationConfig{Expression: `impersonator.id == "auth0|support"`}, impersonated(alice, admin), false, "expression denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newImpersonationPolicy(&tc.cfg)
			if err != nil {
				t.Fatalf("newImpersonationPolicy: %v", err)
			}
			ok, reason := p.decide(context.Background(), tc.target, unitRequest)
			if ok != tc.wantOK || reason != tc.wantReason {
				t.Fatalf("decide = (%v, %q), want (%v, %q)", ok, reason, tc.wantOK, tc.wantReason)
			}
		})
	}
}

func TestImpersonationPolicyDefaults(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name string
		cfg  ImpersonationConfig
		want impersonationPolicy
	}{
		{"an empty block takes every default", ImpersonationConfig{},
			impersonationPolicy{mapping: claimMapping{mode: "auto"}, stateMode: stateAny, confirm: true, maxAge: 5 * time.Minute, lifetime: time.Hour, landing: "/"}},
		{"custom claim paths alone select custom mode", ImpersonationConfig{ImpersonatorIDClaim: "imp.id"},
			impersonationPolicy{mapping: claimMapping{mode: "custom", impersonatorID: "imp.id"}, stateMode: stateAny, confirm: true, maxAge: 5 * time.Minute, lifetime: time.Hour, landing: "/"}},
		{"set values are kept",
			ImpersonationConfig{Claims: "auth0", Namespace: "https://example.com/", State: stateFixed, StateValue: "0123456789abcdef",
				Confirm: &off, MaxAge: durationOf(time.Minute), Lifetime: durationOf(10 * time.Minute), Landing: "/home"},
			impersonationPolicy{mapping: claimMapping{mode: "auth0", namespace: "https://example.com/"}, stateMode: stateFixed,
				stateValue: "0123456789abcdef", confirm: false, maxAge: time.Minute, lifetime: 10 * time.Minute, landing: "/home"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newImpersonationPolicy(&tc.cfg)
			if err != nil {
				t.Fatalf("newImpersonationPolicy: %v", err)
			}
			if p.mapping != tc.want.mapping || p.stateMode != tc.want.stateMode || p.stateValue != tc.want.stateValue ||
				p.confirm != tc.want.confirm || p.maxAge != tc.want.maxAge || p.lifetime != tc.want.lifetime || p.landing != tc.want.landing {
				t.Fatalf("policy %+v, want %+v", *p, tc.want)
			}
		})
	}
}

func TestNewImpersonationPolicyRefusesBadConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ImpersonationConfig
		want string // the error starts with this
	}{
		{"an unknown claims mode is refused", ImpersonationConfig{Claims: "saml"}, `claims "saml": want auto, auth0, keycloak, act or custom`},
		{"claims modes are lower case", ImpersonationConfig{Claims: "Auth0"}, `claims "Auth0": want auto, auth0, keycloak, act or custom`},
		{"custom without an impersonator ID claim is refused", ImpersonationConfig{Claims: "custom"}, "claims custom needs impersonator_id_claim"},
		{"custom paths without the ID claim are refused", ImpersonationConfig{ImpersonatedClaim: "is_imp"}, "claims custom needs impersonator_id_claim"},
		{"a named mode with custom paths is refused", ImpersonationConfig{Claims: "auth0", ImpersonatorIDClaim: "imp"}, "claims auth0 does not take custom claim paths"},
		{"a fixed state shorter than 16 is refused", ImpersonationConfig{State: stateFixed, StateValue: "0123456789abcde"}, "state fixed needs a value of at least 16 characters"},
		{"a fixed state without a value is refused", ImpersonationConfig{State: stateFixed}, "state fixed needs a value of at least 16 characters"},
		{"an unknown state mode is refused", ImpersonationConfig{State: "none"}, `state "none": want any, fixed or signed`},
		{"an absolute landing is refused", ImpersonationConfig{Landing: "https://evil.example/"}, `landing "https://evil.example/": want a path on this site`},
		{"a protocol-relative landing is refused", ImpersonationConfig{Landing: "//evil.example"}, `landing "//evil.example": want a path on this site`},
		{"a relative landing is refused", ImpersonationConfig{Landing: "home"}, `landing "home": want a path on this site`},
		{"a negative max_age is refused", ImpersonationConfig{MaxAge: durationOf(-time.Minute)}, "max_age and lifetime must not be negative"},
		{"a negative lifetime is refused", ImpersonationConfig{Lifetime: durationOf(-time.Minute)}, "max_age and lifetime must not be negative"},
		{"an expression that does not compile is refused", ImpersonationConfig{Expression: `impersonator.email ==`}, `expression "impersonator.email ==" does not compile: `},
		{"an expression over claims (not target) is refused", ImpersonationConfig{Expression: `claims.x == 1`}, `expression "claims.x == 1" does not compile: `},
		{"a non-boolean expression is refused", ImpersonationConfig{Expression: `impersonator.email`}, `expression "impersonator.email" is dyn, not boolean`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newImpersonationPolicy(&tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("newImpersonationPolicy = (%v, %v), want an error starting %q", p, err, tc.want)
			}
		})
	}
}

func TestExpressionsNeverSeeAnUnverifiedEmail(t *testing.T) {
	p, err := newAllowPolicy(&AllowConfig{Expression: `claims.email.endsWith("@example.com")`})
	if err != nil {
		t.Fatal(err)
	}
	for _, verified := range []bool{true, false} {
		id := &identity{claims: claims{"sub": "u", "email": "ceo@example.com", "email_verified": verified},
			subject: "u", email: "ceo@example.com", emailVerified: verified}
		if ok, _ := p.admit(context.Background(), id, nil); ok != verified {
			t.Errorf("email_verified %v: admitted %v", verified, ok)
		}
	}
}
