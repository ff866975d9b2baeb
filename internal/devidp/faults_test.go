// Tests of the endpoint faults: 500, HTML, truncated JSON and hanging, per endpoint.

package devidp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// faultyEndpoint is a request to an endpoint that can fail, and its fault switches.
type faultyEndpoint struct {
	name   string
	req    func() *http.Request // one the provider answers with JSON when well-behaved
	faults [4]Misbehaviour      // 500, HTML, truncated, slow
}

func (e *env) faultRequests() []faultyEndpoint {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"},
		"client_id": {appID}, "client_secret": {appSecret}}.Encode()
	return []faultyEndpoint{
		{"the token endpoint", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, e.url("oauth/token"), strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, [4]Misbehaviour{TokenEndpoint500, TokenEndpointHTML, TokenEndpointTruncated, TokenEndpointSlow}},
		{"userinfo", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, e.url("userinfo"), nil)
		}, [4]Misbehaviour{Userinfo500, UserinfoHTML, UserinfoTruncated, UserinfoSlow}},
		{"discovery", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, e.url(".well-known/openid-configuration"), nil)
		}, [4]Misbehaviour{Discovery500, DiscoveryHTML, DiscoveryTruncated, DiscoverySlow}},
		{"the JWKS", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, e.url(".well-known/jwks.json"), nil)
		}, [4]Misbehaviour{JWKS500, JWKSHTML, JWKSTruncated, JWKSSlow}},
	}
}

func TestEndpointFaults(t *testing.T) {
	e := newEnv(t, nil)
	for _, ep := range e.faultRequests() {
		normal := httptest.NewRecorder()
		e.idp.ServeHTTP(normal, ep.req())
		if !json.Valid(normal.Body.Bytes()) {
			t.Fatalf("%s answers %q without a fault", ep.name, normal.Body)
		}
		t.Run(ep.name+" answers 500", func(t *testing.T) {
			e.idp.SetMisbehaviour(ep.faults[0])
			defer e.idp.SetMisbehaviour()
			w := httptest.NewRecorder()
			e.idp.ServeHTTP(w, ep.req())
			if w.Code != 500 || json.Valid(w.Body.Bytes()) {
				t.Errorf("got %d %q", w.Code, w.Body)
			}
		})
		t.Run(ep.name+" answers an HTML page", func(t *testing.T) {
			e.idp.SetMisbehaviour(ep.faults[1])
			defer e.idp.SetMisbehaviour()
			w := httptest.NewRecorder()
			e.idp.ServeHTTP(w, ep.req())
			if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || !strings.Contains(w.Body.String(), "<html>") {
				t.Errorf("got %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
			}
		})
		t.Run(ep.name+" answers truncated JSON", func(t *testing.T) {
			e.idp.SetMisbehaviour(ep.faults[2])
			defer e.idp.SetMisbehaviour()
			w := httptest.NewRecorder()
			e.idp.ServeHTTP(w, ep.req())
			body := w.Body.String()
			if w.Code != normal.Code || w.Header().Get("Content-Type") != "application/json" ||
				body == "" || json.Valid([]byte(body)) || !strings.HasPrefix(normal.Body.String(), body) {
				t.Errorf("got %d %q, the whole answer being %d %q", w.Code, body, normal.Code, normal.Body)
			}
		})
		t.Run(ep.name+" hangs until the request's context ends, then returns without answering", func(t *testing.T) {
			e.idp.SetMisbehaviour(ep.faults[3])
			defer e.idp.SetMisbehaviour()
			hanging := make(chan struct{})
			e.idp.hanging = func(*http.Request) { close(hanging) }
			defer func() { e.idp.hanging = nil }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				e.idp.ServeHTTP(w, ep.req().WithContext(ctx))
			}()
			select {
			case <-hanging:
			case <-done:
				t.Fatal("the handler answered instead of hanging")
			}
			select {
			case <-done:
				t.Fatal("the handler returned before the context ended")
			default:
			}
			cancel()
			<-done
			if w.Body.Len() != 0 || w.Flushed {
				t.Errorf("it answered %q", w.Body)
			}
		})
	}
	t.Run("a fault of one endpoint leaves the others alone", func(t *testing.T) {
		e.idp.SetMisbehaviour(JWKS500, TokenEndpointSlow)
		defer e.idp.SetMisbehaviour()
		if resp, _ := e.get(t, e.url(".well-known/openid-configuration")); resp.StatusCode != 200 {
			t.Errorf("discovery %d", resp.StatusCode)
		}
	})
}

func TestMisbehaviourSwitching(t *testing.T) {
	t.Run("New refuses an unknown switch", func(t *testing.T) {
		if _, err := New(Config{Issuer: "http://127.0.0.1:1/", Key: sharedKey(t), Misbehave: []Misbehaviour{"nonsense"}}); err == nil {
			t.Error("accepted")
		}
	})
	t.Run("SetMisbehaviour refuses an unknown switch and keeps the old set", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Misbehave = []Misbehaviour{Discovery500} })
		if err := e.idp.SetMisbehaviour(JWKS500, "nonsense"); err == nil {
			t.Error("accepted")
		}
		if resp, _ := e.get(t, e.url(".well-known/openid-configuration")); resp.StatusCode != 500 {
			t.Errorf("discovery %d: the old set is gone", resp.StatusCode)
		}
		if resp, _ := e.get(t, e.url(".well-known/jwks.json")); resp.StatusCode != 200 {
			t.Errorf("JWKS %d: half the new set is in force", resp.StatusCode)
		}
	})
	t.Run("every listed switch is accepted", func(t *testing.T) {
		e := newEnv(t, nil)
		if err := e.idp.SetMisbehaviour(Misbehaviours()...); err != nil {
			t.Error(err)
		}
	})
	t.Run("switching while requests run is safe", func(t *testing.T) {
		e := newEnv(t, nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 50; i++ {
				e.idp.SetMisbehaviour(IDTokenWrongIssuer)
				e.idp.SetMisbehaviour()
			}
		}()
		for i := 0; i < 20; i++ {
			e.implicitTokens(t)
		}
		<-done
	})
}
