// Tests of the command's flags: the configuration they build, and what it prints.

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/relyingparty/caddy-oidc-auth/internal/devidp"
)

func TestConfigFromFlags(t *testing.T) {
	t.Run("the defaults make the demo's provider on 127.0.0.1:9000", func(t *testing.T) {
		cfg, addr, err := configFromFlags(nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []devidp.Client{{ID: "demo-app", Secret: "demo-app-secret",
			RedirectURIs:           []string{"http://localhost:8080/oauth2/callback"},
			PostLogoutRedirectURIs: []string{"http://localhost:8080/"}}}
		if addr != "127.0.0.1:9000" || cfg.Issuer != "http://127.0.0.1:9000/" || cfg.Mode != devidp.ModeAuth0 ||
			cfg.Users != nil || len(cfg.AdminToken) != 32 || cfg.Misbehave != nil || !reflect.DeepEqual(cfg.Clients, want) {
			t.Errorf("addr %q, config %+v", addr, cfg)
		}
		if _, err := devidp.New(cfg); err != nil {
			t.Errorf("New: %v", err)
		}
	})
	t.Run("every flag lands in the configuration", func(t *testing.T) {
		users := filepath.Join(t.TempDir(), "users.json")
		os.WriteFile(users, []byte(`[{"key":"dora","id":"auth0|dora","email":"dora@example.org","email_verified":true,
			"name":"Dora","nickname":"d","groups":["ops"],"roles":["r"],"admin":true}]`), 0o600)
		cfg, addr, err := configFromFlags([]string{"-addr", "0.0.0.0:9100", "-issuer", "https://idp.example.test/tenant/",
			"-client-id", "web", "-client-secret", "s3", "-redirect-uri", "https://a.test/cb", "-redirect-uri", "https://b.test/cb",
			"-post-logout-uri", "https://a.test/", "-backchannel-logout-uri", "https://a.test/bc", "-users", users,
			"-mode", "act", "-namespace", "https://example.com/", "-admin-token", "tok", "-misbehave", "jwks-500, id-token-invalid-iss"})
		if err != nil {
			t.Fatal(err)
		}
		want := devidp.Config{
			Issuer: "https://idp.example.test/tenant/",
			Clients: []devidp.Client{{ID: "web", Secret: "s3", RedirectURIs: []string{"https://a.test/cb", "https://b.test/cb"},
				PostLogoutRedirectURIs: []string{"https://a.test/"}, BackchannelLogoutURI: "https://a.test/bc"}},
			Users: []devidp.User{{Key: "dora", ID: "auth0|dora", Email: "dora@example.org", EmailVerified: true,
				Name: "Dora", Nickname: "d", Groups: []string{"ops"}, Roles: []string{"r"}, Admin: true}},
			AdminToken: "tok", Mode: devidp.ModeAct, Namespace: "https://example.com/",
			Misbehave: []devidp.Misbehaviour{devidp.JWKS500, devidp.IDTokenWrongIssuer},
		}
		if addr != "0.0.0.0:9100" || !reflect.DeepEqual(cfg, want) {
			t.Errorf("addr %q\n got %+v\nwant %+v", addr, cfg, want)
		}
		if _, err := devidp.New(cfg); err != nil {
			t.Errorf("New: %v", err)
		}
	})
	t.Run("-user adds a user to the demo users, or to the file's", func(t *testing.T) {
		cfg, _, err := configFromFlags([]string{"-user", "dora.d@example.org:ops, admins", "-user", "eve@example.net"})
		if err != nil {
			t.Fatal(err)
		}
		demo := devidp.DemoUsers()
		want := append(demo, devidp.User{Key: "dora-d", ID: "auth0|dora-d", Email: "dora.d@example.org", EmailVerified: true,
			Name: "dora.d", Nickname: "dora-d", Groups: []string{"ops", "admins"}},
			devidp.User{Key: "eve", ID: "auth0|eve", Email: "eve@example.net", EmailVerified: true, Name: "eve", Nickname: "eve"})
		if !reflect.DeepEqual(cfg.Users, want) {
			t.Errorf("users\n got %+v\nwant %+v", cfg.Users, want)
		}
		if _, err := devidp.New(cfg); err != nil {
			t.Errorf("New: %v", err)
		}
		users := filepath.Join(t.TempDir(), "users.json")
		os.WriteFile(users, []byte(`[{"key":"dora","id":"auth0|dora"}]`), 0o600)
		cfg, _, err = configFromFlags([]string{"-users", users, "-user", "eve@example.net"})
		if err != nil || len(cfg.Users) != 2 || cfg.Users[0].Key != "dora" || cfg.Users[1].Key != "eve" {
			t.Errorf("users %+v, %v", cfg.Users, err)
		}
	})
	t.Run("listening on every address makes a loopback issuer", func(t *testing.T) {
		for _, a := range []string{":9200", "0.0.0.0:9200", "[::]:9200"} {
			if cfg, _, _ := configFromFlags([]string{"-addr", a}); cfg.Issuer != "http://127.0.0.1:9200/" {
				t.Errorf("-addr %s: issuer %q", a, cfg.Issuer)
			}
		}
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"an unknown misbehaviour is refused", []string{"-misbehave", "be-evil"}},
		{"a missing users file is refused", []string{"-users", filepath.Join(t.TempDir(), "none.json")}},
		{"a stray argument is refused", []string{"extra"}},
		{"an unknown flag is refused", []string{"-port", "1"}},
		{"an address without a port is refused", []string{"-addr", "localhost"}},
		{"a -user that is not an email is refused", []string{"-user", "dora"}},
		{"a -user without a local part is refused", []string{"-user", "@example.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := configFromFlags(tc.args); err == nil {
				t.Error("accepted")
			}
		})
	}
	t.Run("a users file that is not a list of users is refused", func(t *testing.T) {
		for _, body := range []string{`{"key":"a"}`, `[]`} {
			f := filepath.Join(t.TempDir(), "users.json")
			os.WriteFile(f, []byte(body), 0o600)
			if _, _, err := configFromFlags([]string{"-users", f}); err == nil {
				t.Errorf("accepted %s", body)
			}
		}
	})
}

func TestDescribe(t *testing.T) {
	cfg, addr, err := configFromFlags([]string{"-admin-token", "tok", "-backchannel-logout-uri", "http://localhost:8080/bc",
		"-misbehave", "userinfo-500"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	describe(&b, addr, cfg)
	for _, want := range []string{"issuer      http://127.0.0.1:9000/", "client_id     demo-app", "client_secret demo-app-secret",
		"redirect_uri  http://localhost:8080/oauth2/callback", "back-channel  http://localhost:8080/bc", "admin token tok",
		"alice", "auth0|alice", "alice@example.com", "admin@example.com (administrator)", "Misbehaving: userinfo-500"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
