package caddymodule

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// logLine is one line of Caddy's JSON log.
type logLine struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
}

// loadWith is h.load with Caddy's JSON configuration changed by edit (nil: as it is) and its
// default log, from WARN up, written as JSON to a file; it returns a reader of the lines
// logged so far, provisioning's included.
func (h *harness) loadWith(port string, edit func(cfg map[string]any), handlers ...json.RawMessage) func() []logLine {
	t := h.t
	var cfg map[string]any
	if err := json.Unmarshal(h.siteConfig(port, handlers...), &cfg); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{
		"level":   "WARN",
		"writer":  map[string]any{"output": "file", "filename": logFile},
		"encoder": map[string]any{"format": "json"},
	}}}
	if edit != nil {
		edit(cfg)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("loading Caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	h.inject()
	return func() []logLine {
		f, err := os.Open(logFile)
		if err != nil {
			t.Fatalf("reading Caddy's log: %v", err)
		}
		defer f.Close()
		var lines []logLine
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines = append(lines, l)
			}
		}
		return lines
	}
}

// trustProxies sets the site server's trusted_proxies to the static ranges.
func trustProxies(ranges ...string) func(map[string]any) {
	return func(cfg map[string]any) {
		srv := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)["site"].(map[string]any)
		srv["trusted_proxies"] = map[string]any{"source": "static", "ranges": ranges}
	}
}

func TestForwardedProto(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string // the server's trusted_proxies; nil: none
		proto   []string // X-Forwarded-Proto values sent
		scheme  string   // of the URLs the provider is sent
	}{
		{"a trusted proxy's X-Forwarded-Proto https is honoured", []string{"127.0.0.1/32"}, []string{"https"}, "https"},
		{"the last value counts: the one the trusted proxy appended, not the client's", []string{"127.0.0.1/32"}, []string{"http, HTTPS"}, "https"},
		{"the last header line counts, as Caddy's reverse_proxy reads it", []string{"127.0.0.1/32"}, []string{"http", "https"}, "https"},
		{"a trusted proxy's value other than http or https is ignored", []string{"127.0.0.1/32"}, []string{"wss"}, "http"},
		{"an untrusted peer's X-Forwarded-Proto is ignored", []string{"10.0.0.0/8"}, []string{"https"}, "http"},
		{"without trusted_proxies X-Forwarded-Proto is ignored", nil, []string{"https"}, "http"},
		{"a trusted proxy without the header keeps the connection's scheme", []string{"127.0.0.1/32"}, nil, "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, port := startHarness(t, nil)
			hc := h.handlerConfig(nil)
			var edit func(map[string]any)
			if tc.trusted != nil {
				edit = trustProxies(tc.trusted...)
			}
			h.loadWith(port, edit, handlerJSON(t, "oidc_auth", &hc))
			host := strings.TrimPrefix(h.siteURL, "http://")

			location := func(path string, headers ...string) *url.URL {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, h.siteURL+path, nil)
				req.Header.Set("Accept", "text/html")
				for _, p := range tc.proto {
					req.Header.Add("X-Forwarded-Proto", p)
				}
				for i := 0; i+1 < len(headers); i += 2 {
					req.Header.Set(headers[i], headers[i+1])
				}
				resp, err := h.noRedirects().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				u, err := url.Parse(resp.Header.Get("Location"))
				if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(u.String(), h.idpURL) {
					t.Fatalf("GET %s: %d to %q, want a redirect to the provider", path, resp.StatusCode, u)
				}
				return u
			}
			if got, want := location("/").Query().Get("redirect_uri"), tc.scheme+"://"+host+"/oauth2/callback"; got != want {
				t.Errorf("the provider is sent redirect_uri %q, want %q", got, want)
			}
			logout := location("/oauth2/logout?rd=/bye", "Sec-Fetch-Site", "same-origin")
			if got, want := logout.Query().Get("post_logout_redirect_uri"), tc.scheme+"://"+host+"/bye"; got != want {
				t.Errorf("the provider is sent the post-logout URL %q, want %q (%s)", got, want, logout)
			}
		})
	}
}
