package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// An impersonation response is used once, while fresh, and as the provider signed it.

func TestImpersonationStaleResponseIsRefused(t *testing.T) {
	t.Run("a code delivered after max_age", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{MaxAge: durationOf(2 * time.Minute)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
		h.clock.Advance(3 * time.Minute)
		res := h.browse(loc.String())
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "stale", "subject": "auth0|alice",
			"impersonator": "auth0|admin"})
		h.impNoSession()
	})
	t.Run("tokens relayed after max_age", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil) // default max_age 5m
		loc := h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))
		h.clock.Advance(5*time.Minute + time.Second)
		res := h.impRelayFragment(loc)
		if res.status != http.StatusForbidden {
			t.Fatalf("%d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "stale", "subject": "auth0|alice",
			"impersonator": "auth0|admin"})
		h.impNoSession()
	})
	t.Run("a response within max_age is accepted", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{MaxAge: durationOf(2 * time.Minute)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{}))
		h.clock.Advance(time.Minute)
		impConfirmToken(t, h.browse(loc.String()))
	})
}

func TestImpersonationReplayIsRefused(t *testing.T) {
	t.Run("the same code delivered twice", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{State: "s"}))
		if _, ok := h.browse(loc.String()).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		other := h.impOtherBrowser()
		res := other.browse(loc.String())
		if res.status != http.StatusForbidden {
			t.Fatalf("replay: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "replayed"})
		if res := h.browse(loc.String()); res.status != http.StatusForbidden {
			t.Errorf("replay in the same browser: %d", res.status)
		}
		if n := h.audit.FilterMessage(evImpersonationDenied).Len(); n != 2 {
			t.Errorf("%d refusals audited, want 2", n)
		}
		if n := h.audit.FilterMessage(evImpersonationStarted).Len(); n != 1 {
			t.Errorf("%d impersonations started, want 1", n)
		}
		other.impNoSession()
		h.impNoSecretsLogged(loc.Query().Get("code"))
	})
	t.Run("the same tokens posted twice", func(t *testing.T) {
		h := newHarness(t, withImpersonation(&ImpersonationConfig{Confirm: boolPtr(false)}), nil)
		loc := h.impCallback(h.impLink("alice", "admin", impParams{ResponseType: "token"}))
		if _, ok := h.impRelayFragment(loc).echo(); !ok {
			t.Fatal("the first delivery did not sign in")
		}
		other := h.impOtherBrowser()
		if res := other.impRelayFragment(loc); res.status != http.StatusForbidden {
			t.Fatalf("replay: %d %.300s", res.status, res.body)
		}
		h.impAudit(evImpersonationDenied, map[string]string{"reason": "replayed"})
		other.impNoSession()
		frag, _ := url.ParseQuery(loc.EscapedFragment())
		h.impNoSecretsLogged(frag.Get("access_token"), frag.Get("id_token"))
	})
}

func TestImpersonationBadMacLinkNeverReachesTheSite(t *testing.T) {
	h := newHarness(t, withImpersonation(&ImpersonationConfig{}), nil)
	link := h.impLink("alice", "admin", impParams{})
	i := strings.LastIndex(link, ".") + 5 // a character inside the MAC
	flip := byte('A')
	if link[i] == 'A' {
		flip = 'B'
	}
	tampered := link[:i] + string(flip) + link[i+1:]
	res := h.browse(tampered)
	var answer struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if res.status != http.StatusUnauthorized || json.Unmarshal([]byte(res.body), &answer) != nil ||
		answer.Error != "access_denied" || answer.Description != "Impersonation - Bad mac" {
		t.Fatalf("tampered link: %d %s", res.status, res.body)
	}
	if !strings.HasPrefix(res.url.String(), h.idpURL) {
		t.Errorf("the browser left the provider: %s", res.url)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("the site saw a callback: %v", evs)
	}
	if h.upstream.count() != 0 {
		t.Error("the upstream was reached")
	}
	h.impNoSession()
	// The untampered link is still good: the tampered one did not use it up.
	impConfirmToken(t, h.browse(link))
}
