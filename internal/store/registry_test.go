package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestTheRegistryListsFiltersAndRevokes(t *testing.T) {
	t.Parallel()
	s, now := clockedStore()
	ctx := context.Background()
	recs := []SessionRecord{
		{ID: "a", Subject: "alice", SID: "sid-1", Created: *now, Expires: now.Add(time.Hour)},
		{ID: "b", Subject: "bob", SID: "sid-2", Created: now.Add(time.Second), Expires: now.Add(time.Hour)},
		{ID: "c", Subject: "alice", Impersonated: true, Impersonator: "admin", Created: now.Add(2 * time.Second), Expires: now.Add(time.Hour)},
		{ID: "old", Subject: "alice", Created: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)},
	}
	for _, r := range recs {
		if err := s.Register(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f Filter) []string {
		got, err := s.Sessions(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range got {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "[a b c]"},
		{Filter{Subject: "alice"}, "[a c]"},
		{Filter{Impersonator: "admin"}, "[c]"},
		{Filter{ImpersonatedOnly: true}, "[c]"},
		{Filter{SID: "sid-2"}, "[b]"},
	} {
		if got := fmt.Sprint(ids(tc.f)); got != tc.want {
			t.Errorf("Sessions(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
	if s.Revoked("a") {
		t.Fatal("revoked before any revocation")
	}
	if err := s.Revoke(ctx, recs[:1]); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked("a") || s.Revoked("b") {
		t.Error("the revocation set is wrong")
	}
	if got := fmt.Sprint(ids(Filter{Subject: "alice"})); got != "[c]" {
		t.Errorf("a revoked session is still listed: %s", got)
	}
	// A revocation is forgotten once its session would have ended.
	*now = now.Add(2 * time.Hour)
	_ = s.Revoke(ctx, nil)
	if s.Revoked("a") {
		t.Error("a revocation outlived its session")
	}
}
