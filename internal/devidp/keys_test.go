// Tests of key rotation: new tokens use the new key, old tokens verify until their key goes.

package devidp

import (
	"slices"
	"testing"
)

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, nil)
	first := e.idp.Kids()
	if len(first) != 1 {
		t.Fatalf("Kids %v", first)
	}
	before := e.implicitTokens(t).Get("id_token")
	kid, err := e.idp.RotateKeyTo(sharedKey2(t))
	if err != nil {
		t.Fatal(err)
	}
	after := e.implicitTokens(t).Get("id_token")
	t.Run("Kids lists the old key then the new one", func(t *testing.T) {
		if got := e.idp.Kids(); !slices.Equal(got, []string{first[0], kid}) {
			t.Errorf("Kids %v", got)
		}
	})
	t.Run("the JWKS publishes both keys", func(t *testing.T) {
		var kids []string
		for _, k := range e.jwks(t) {
			kids = append(kids, k.Kid)
		}
		if !slices.Equal(kids, []string{first[0], kid}) {
			t.Errorf("JWKS kids %v", kids)
		}
	})
	t.Run("new tokens are signed with the new key", func(t *testing.T) {
		if h, _, _ := jwtParts(t, after); h["kid"] != kid {
			t.Errorf("kid %v, want %s", h["kid"], kid)
		}
		e.verifyJWT(t, after)
	})
	t.Run("a token signed before the rotation still verifies through the JWKS", func(t *testing.T) {
		if h, _, _ := jwtParts(t, before); h["kid"] != first[0] {
			t.Errorf("kid %v", h["kid"])
		}
		e.verifyJWT(t, before)
	})
	t.Run("the provider still takes the old ID token as id_token_hint", func(t *testing.T) {
		var c struct{ Sub string }
		if err := e.idp.verify(before, &c); err != nil || c.Sub != "auth0|alice" {
			t.Errorf("verify: %v %v", err, c)
		}
	})
	t.Run("the signing key cannot be removed, nor an unknown one", func(t *testing.T) {
		if err := e.idp.RemoveKey(kid); err == nil {
			t.Error("removed the signing key")
		}
		if err := e.idp.RemoveKey("nope"); err == nil {
			t.Error("removed an unknown key")
		}
		if _, err := e.idp.RotateKeyTo(sharedKey2(t)); err == nil {
			t.Error("published one key twice")
		}
	})
	t.Run("once the old key is removed its tokens no longer verify", func(t *testing.T) {
		if err := e.idp.RemoveKey(first[0]); err != nil {
			t.Fatal(err)
		}
		keys := e.jwks(t)
		if len(keys) != 1 || keys[0].Kid != kid || verifiesWith(before, keys) || !verifiesWith(after, keys) {
			t.Errorf("JWKS %+v", keys)
		}
		var c struct{ Sub string }
		if e.idp.verify(before, &c) == nil {
			t.Error("the provider still trusts the removed key")
		}
	})
	t.Run("RetireOldKeys keeps only the signing key", func(t *testing.T) {
		newest, err := e.idp.RotateKeyTo(sharedKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if old := e.idp.RetireOldKeys(); !slices.Equal(old, []string{kid}) {
			t.Errorf("retired %v", old)
		}
		if got := e.idp.Kids(); !slices.Equal(got, []string{newest}) {
			t.Errorf("Kids %v", got)
		}
	})
}

func TestRotateKeyGeneratesAKey(t *testing.T) {
	e := newEnv(t, nil)
	kid, err := e.idp.RotateKey()
	if err != nil || len(e.idp.Kids()) != 2 || e.idp.Kids()[1] != kid {
		t.Fatalf("RotateKey %q %v, Kids %v", kid, err, e.idp.Kids())
	}
	e.verifyJWT(t, e.implicitTokens(t).Get("id_token"))
}
