package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// discoveryServer answers discovery only after release is closed, counting the requests.
func discoveryServer(t *testing.T, fail bool) (srv *httptest.Server, hits *atomic.Int32, arrived, release chan struct{}) {
	hits, arrived, release = new(atomic.Int32), make(chan struct{}, 16), make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		arrived <- struct{}{}
		<-release
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"` + "http://" + r.Host + `","authorization_endpoint":"http://` + r.Host +
			`/authorize","token_endpoint":"http://` + r.Host + `/token","jwks_uri":"http://` + r.Host + `/jwks"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, hits, arrived, release
}

func TestConcurrentRequestsShareOneDiscovery(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		name := map[bool]string{false: "a successful discovery", true: "a failed discovery"}[fail]
		t.Run(name+" is made once for many waiting requests", func(t *testing.T) {
			t.Parallel()
			srv, hits, arrived, release := discoveryServer(t, fail)
			now := time.Unix(1_800_000_000, 0)
			p := newProvider(context.Background(), providerConfig{issuer: srv.URL, clientID: "app", logger: zap.NewNop(),
				now: func() time.Time { return now }})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := p.get()
					errs <- err
				}()
			}
			<-arrived // one discovery is under way; the other gets join it
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				if (err != nil) != fail {
					t.Errorf("a waiter got %v", err)
				}
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("%d discovery requests for 8 concurrent gets, want 1", n)
			}
			if fail {
				if _, err := p.get(); err == nil || hits.Load() != 1 {
					t.Errorf("a get right after the failure asked again (%d requests) or succeeded", hits.Load())
				}
				now = now.Add(discoveryRetry)
				_, _ = p.get()
				if hits.Load() != 2 {
					t.Errorf("after discoveryRetry, no new discovery was tried (%d requests)", hits.Load())
				}
			}
		})
	}
}

// A token endpoint answering 307 or 308 must not have the module send the code, the refresh
// token or the client's secret on to where it points.
func TestTheProviderClientFollowsNoRedirectOfAPost(t *testing.T) {
	t.Parallel()
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked.Add(1) }))
	defer elsewhere.Close()
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer token.Close()
	p := newProvider(context.Background(), providerConfig{now: time.Now, logger: zap.NewNop()})
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		req, _ := http.NewRequest(method, token.URL+"/oauth/token", strings.NewReader("code=c&client_secret=s"))
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if method == http.MethodPost && (resp.StatusCode != http.StatusTemporaryRedirect || leaked.Load() != 0) {
			t.Errorf("a POST answered 307: status %d, %d requests reached the redirect's target", resp.StatusCode, leaked.Load())
		}
		if method == http.MethodGet && leaked.Load() != 1 {
			t.Errorf("a GET's redirect was not followed (discovery and keys may move)")
		}
	}
}
