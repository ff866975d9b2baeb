package caddyoidcauth

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the JSON form of every example")

// TestExamplesAdapt keeps the example configurations from rotting: every Caddyfile adapts
// without warnings, matches its committed JSON form, and that JSON provisions the module.
func TestExamplesAdapt(t *testing.T) {
	files, err := filepath.Glob("examples/*/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "Caddyfile.example")
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	for _, env := range []string{"OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "AUTH0_DOMAIN"} {
		t.Setenv(env, "example-"+strings.ToLower(env))
	}
	t.Setenv("OIDC_SESSION_SECRET", strings.Repeat("x", 32))
	t.Setenv("OIDC_OLD_SESSION_SECRET", strings.Repeat("y", 32))
	for _, file := range files {
		t.Run(file+" adapts and provisions", func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": file})
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s:%d: %s", w.File, w.Line, w.Message)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := strings.TrimSuffix(file, "Caddyfile") + "caddy.json"
			if file == "Caddyfile.example" {
				golden = "Caddyfile.example.json"
			}
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no JSON form (run go test -run TestExamplesAdapt -update .): %v", err)
			}
			if !bytes.Equal(want, pretty.Bytes()) {
				t.Errorf("%s is not the JSON form of %s (run go test -run TestExamplesAdapt -update .)", golden, file)
			}
			if bytes.Contains(out, []byte(`"oidc_auth":{"providers"`)) {
				// Handlers naming a provider need the oidc_auth app: provision the whole
				// configuration, as Caddy would before starting it.
				var cfg caddy.Config
				if err := json.Unmarshal(out, &cfg); err != nil {
					t.Fatal(err)
				}
				if err := caddy.Validate(&cfg); err != nil {
					t.Errorf("provisioning: %v", err)
				}
				return
			}
			provision(t, out)
		})
	}
}

// provision builds every oidc_auth handler of an adapted config with Caddy's own module
// loading, without starting any server.
func provision(t *testing.T, cfg []byte) {
	t.Helper()
	var root any
	if err := json.Unmarshal(cfg, &root); err != nil {
		t.Fatal(err)
	}
	var handlers []map[string]any
	var visit func(v any)
	visit = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "oidc_auth" {
				handlers = append(handlers, x)
			}
			for _, e := range x {
				visit(e)
			}
		case []any:
			for _, e := range x {
				visit(e)
			}
		}
	}
	visit(root)
	if len(handlers) == 0 {
		t.Fatal("found no oidc_auth handler")
	}
	for _, h := range handlers {
		delete(h, "handler")
		raw, _ := json.Marshal(h)
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		if _, err := ctx.LoadModuleByID("http.handlers.oidc_auth", raw); err != nil {
			t.Errorf("provisioning: %v", err)
		}
		cancel()
	}
}
