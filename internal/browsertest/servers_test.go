package browsertest

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// request is what the tests look at of a request a server received.
type request struct {
	Method, Path, Query  string
	FetchSite, FetchDest string // Sec-Fetch-Site, Sec-Fetch-Dest
}

// requestLog records the requests a server received, in order.
type requestLog struct {
	mu   sync.Mutex
	reqs []request
}

func (l *requestLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, request{r.Method, r.URL.Path, r.URL.RawQuery,
		r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Sec-Fetch-Dest")})
}

// all returns the requests recorded so far.
func (l *requestLog) all() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]request(nil), l.reqs...)
}

// count is how many requests had this method and path.
func (l *requestLog) count(method, path string) int {
	n := 0
	for _, r := range l.all() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// since returns the requests after the first n.
func (l *requestLog) since(n int) []request {
	return l.all()[n:]
}

func (l *requestLog) len() int { return len(l.all()) }

func (l *requestLog) String() string {
	var b strings.Builder
	for _, r := range l.all() {
		fmt.Fprintf(&b, "  %s %s (site %q, dest %q)\n", r.Method, r.Path, r.FetchSite, r.FetchDest)
	}
	return b.String()
}

// siteRequests is where the recorder module of the running Caddy writes. One Caddy runs at a
// time, so one pointer is enough.
var siteRequests atomic.Pointer[requestLog]

// recordRequests is a Caddy middleware that records each request of the site before oidc_auth
// sees it, so tests can tell what the browser sent (the confirm POST of a framed page, say).
type recordRequests struct{}

func (recordRequests) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.browsertest_record",
		New: func() caddy.Module { return new(recordRequests) },
	}
}

func (recordRequests) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if l := siteRequests.Load(); l != nil {
		l.add(r)
	}
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(recordRequests{})
	httpcaddyfile.RegisterHandlerDirective("browsertest_record", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		if h.NextArg() {
			return nil, h.ArgErr()
		}
		return recordRequests{}, nil
	})
}

var _ caddyhttp.MiddlewareHandler = recordRequests{}

// framingSite is another site that tries to show pages in iframes: /frame?src=URL&control=URL
// frames src and, as a control, a page that allows framing; window.framesLoaded counts the
// iframes' load events. /framable is that control page.
func framingSite() http.Handler {
	page := template.Must(template.New("frame").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Another site</title>
<script>window.framesLoaded = 0;</script></head>
<body><h1>Another site</h1>
<iframe id="victim" name="victim" src="{{.Src}}" width="600" height="300" onload="window.framesLoaded++"></iframe>
<iframe id="control" name="control" src="{{.Control}}" width="300" height="100" onload="window.framesLoaded++"></iframe>
</body></html>`))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /frame", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]string{"Src": r.URL.Query().Get("src"), "Control": r.URL.Query().Get("control")})
	})
	mux.HandleFunc("GET /framable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>Framable</title><p id="framable">This page may be framed.</p>`))
	})
	return mux
}
