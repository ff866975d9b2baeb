package caddymodule

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Whether a browser sent to the callback comes back to the handler that sent it: the server's
// routes walked as Caddy runs them, at start and before each sign-in is started.

// routeChain returns the routes, outermost first, through which a request reaches h.
func (h *Handler) routeChain(routes caddyhttp.RouteList, chain []*caddyhttp.Route) ([]*caddyhttp.Route, bool) {
	for i := range routes {
		r := &routes[i]
		for _, mh := range r.Handlers {
			if mh == caddyhttp.MiddlewareHandler(h.owner()) {
				return append(chain, r), true
			}
			if sub, ok := mh.(*caddyhttp.Subroute); ok {
				if c, found := h.routeChain(sub.Routes, append(slices.Clip(chain), r)); found {
					return c, true
				}
			}
		}
	}
	return nil, false
}

// hostOf is a host the chain's host matchers accept, or "" when they name none.
func hostOf(chain []*caddyhttp.Route) string {
	for _, r := range chain {
		for _, set := range r.MatcherSets {
			for _, m := range set {
				if hosts, ok := m.(*caddyhttp.MatchHost); ok && len(*hosts) > 0 {
					return strings.ReplaceAll((*hosts)[0], "*", "x")
				}
			}
		}
	}
	return ""
}

// decidedByHostAndPath reports whether every matcher of the routes (and their subroutes) reads
// only the host and the path, so that a request made up at start routes as a browser's would.
func decidedByHostAndPath(routes caddyhttp.RouteList) bool {
	for i := range routes {
		for _, set := range routes[i].MatcherSets {
			for _, m := range set {
				switch m.(type) {
				case *caddyhttp.MatchHost, *caddyhttp.MatchPath, caddyhttp.MatchHost, caddyhttp.MatchPath:
				default:
					return false
				}
			}
		}
		for _, mh := range routes[i].Handlers {
			if sub, ok := mh.(*caddyhttp.Subroute); ok && !decidedByHostAndPath(sub.Routes) {
				return false
			}
		}
	}
	return true
}

// owner is the handler that sits in the route: h, or the handler of several providers h is
// one of.
func (h *Handler) owner() *Handler {
	if h.parent != nil {
		return h.parent
	}
	return h
}

// callbackReaches reports whether a request for the callback on host would reach h, running
// the server's routes as Caddy would: matchers, groups (one route of a group), subroutes, and
// the handlers that answer a request themselves.
func (h *Handler) callbackReaches(srv *caddyhttp.Server, host string) bool {
	reached, _ := h.walk(srv.Routes, browserRequest(srv, host, h.callbackPath, nil), map[string]bool{})
	return reached
}

// browserRequest is a request for path as a browser sends it: from like's browser (its
// address, connection, Host and headers) when given, else a plain one to host, as srv would
// see it. The Host is set, never parsed: a client chooses it.
func browserRequest(srv *caddyhttp.Server, host, path string, like *http.Request) *http.Request {
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Host: "localhost", Path: path},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Accept": {"text/html"}},
		Host: host, RemoteAddr: "127.0.0.1:1"}
	if like != nil {
		r.Host, r.RemoteAddr, r.TLS = like.Host, like.RemoteAddr, like.TLS
		r.Proto, r.ProtoMajor, r.ProtoMinor = like.Proto, like.ProtoMajor, like.ProtoMinor
		r.Header = like.Header.Clone()
	}
	if r.Host == "" {
		r.Host = "localhost"
	}
	return caddyhttp.PrepareRequest(r.WithContext(context.Background()), caddy.NewReplacer(), nil, srv)
}

// walk runs routes for req: reached says h would serve it; answered that a handler before h
// answers it (the routes after are not run).
func (h *Handler) walk(routes caddyhttp.RouteList, req *http.Request, groups map[string]bool) (reached, answered bool) {
	for i := range routes {
		r := &routes[i]
		if r.Group != "" && groups[r.Group] {
			continue
		}
		if len(r.MatcherSets) > 0 {
			if ok, err := r.MatcherSets.AnyMatchWithError(req); !ok || err != nil {
				continue
			}
		}
		if r.Group != "" {
			groups[r.Group] = true
		}
		for _, mh := range r.Handlers {
			switch mh := mh.(type) {
			case *Handler:
				// This handler, or another that completes its sign-ins (another route's oidc_auth
				// of the same provider, client, callback, cookie and secrets), serves the
				// callback; any other oidc_auth answers it itself.
				return mh.completes(h), true
			case *caddyhttp.Subroute:
				if reached, answered := h.walk(mh.Routes, req, groups); reached || answered {
					return reached, answered
				}
			case *reverseproxy.Handler, *fileserver.FileServer, *caddyhttp.StaticResponse, *caddyhttp.StaticError:
				return false, true
			}
		}
		if r.Terminal {
			return false, true
		}
	}
	return false, false
}

// completes reports whether o (or one of its providers) completes sign-ins h starts: it serves
// the same callback for the same provider and client, reads the same attempt cookies, and opens
// them with h's sealing secret.
func (o *Handler) completes(h *Handler) bool {
	if o.choices != nil {
		return slices.ContainsFunc(o.choices, func(c *Handler) bool { return c.completes(h) })
	}
	return o == h || o.provKey == h.provKey && o.callbackPath == h.callbackPath && o.Cookie != nil &&
		h.Cookie != nil && o.Cookie.Name == h.Cookie.Name && len(h.SessionSecrets) > 0 &&
		slices.Contains(o.SessionSecrets, h.SessionSecrets[0])
}

// misroutedCallback says what is wrong when the callback does not reach the handler.
func (h *Handler) misroutedCallback(host string) string {
	msg := "oidc_auth: a browser sent to the callback " + h.callbackPath
	if host != "" {
		msg += " on " + host
	}
	return msg + " does not reach this oidc_auth (it sits in a route whose matchers do not match that path), " +
		"so sign-ins cannot complete and the provider's code would reach the application: sign-ins are refused. " +
		"Set redirect_uri to a path this route matches (and register it at the provider), or put oidc_auth " +
		"where every path reaches it"
}

// callbackRouted reports whether a browser sent to the callback, as this request's browser
// (its address, connection, Host and headers, which route matchers may read), would reach h.
// It is asked before a sign-in is started, never on the authenticated path. A request
// without the server in its context (unit tests) is taken as routed.
func (h *Handler) callbackRouted(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return true
	}
	if _, found := h.routeChain(srv.Routes, nil); !found {
		// Reached through something the walk does not follow (a named route's invoke, a
		// plugin's own routes): it cannot tell, so it does not refuse.
		return true
	}
	reached, _ := h.walk(srv.Routes, browserRequest(srv, "", h.callbackPath, r), map[string]bool{})
	if !reached {
		h.logger.Error(h.misroutedCallback(r.Host))
	}
	return reached
}
