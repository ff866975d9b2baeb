package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

func durationOf(d time.Duration) caddy.Duration { return caddy.Duration(d) }

func TestImpersonationPolicyDefaults(t *testing.T) {
	t.Parallel()
	off := false
	for _, tc := range []struct {
		name string
		cfg  ImpersonationConfig
		want impersonationPolicy
	}{
		{"an empty block takes every default", ImpersonationConfig{},
			impersonationPolicy{mapping: claims.Mapping{}, stateMode: stateAny, confirm: true, maxAge: 5 * time.Minute, lifetime: time.Hour, landing: "/"}},
		{"custom claim paths alone select custom mode", ImpersonationConfig{ImpersonatorIDClaim: "imp.id"},
			impersonationPolicy{mapping: claims.Mapping{Mode: claims.ModeCustom, ImpersonatorID: "imp.id"}, stateMode: stateAny, confirm: true, maxAge: 5 * time.Minute, lifetime: time.Hour, landing: "/"}},
		{"set values are kept",
			ImpersonationConfig{Claims: "auth0", Namespace: "https://example.com/", State: "fixed", StateValue: "0123456789abcdef",
				Confirm: &off, MaxAge: durationOf(time.Minute), Lifetime: durationOf(10 * time.Minute), Landing: "/home"},
			impersonationPolicy{mapping: claims.Mapping{Mode: claims.ModeAuth0, Namespace: "https://example.com/"}, stateMode: stateFixed,
				stateValue: "0123456789abcdef", confirm: false, maxAge: time.Minute, lifetime: 10 * time.Minute, landing: "/home"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
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
	t.Parallel()
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
		{"a fixed state shorter than 16 is refused", ImpersonationConfig{State: "fixed", StateValue: "0123456789abcde"}, "state fixed needs a value of at least 16 characters"},
		{"a fixed state without a value is refused", ImpersonationConfig{State: "fixed"}, "state fixed needs a value of at least 16 characters"},
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
			t.Parallel()
			p, err := newImpersonationPolicy(&tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("newImpersonationPolicy = (%v, %v), want an error starting %q", p, err, tc.want)
			}
		})
	}
}
