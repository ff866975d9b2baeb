package caddymodule

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// What an operator sees when Caddy starts: one line per handler saying where its endpoints are
// and which provider it uses, what discovery found (tried once, in the background), and a
// warning for each configuration that loads but would quietly do the wrong thing.

// routeCheckWait bounds how long, after provisioning, the handler waits for its configuration
// to run before it checks that its callback reaches it.
const routeCheckWait = 30 * time.Second

// reportAtStart logs the handler's effective configuration and its warnings, then, without
// holding up the start, discovers the provider and checks the routing of its callback. The
// background checks work from what they are given here: they share nothing with the requests.
func (h *Handler) reportAtStart(ctx caddy.Context) {
	fields := []zap.Field{
		zap.String("redirect_uri", h.RedirectURI),
		zap.String("endpoints", h.prefix+"{"+h.callbackName+",start,logout,userinfo,...}"),
		zap.String("issuer", h.Issuer),
		zap.String("client_id", h.ClientID),
	}
	if h.providerName != "" {
		fields = append(fields, zap.String("provider", h.providerName))
	}
	if h.bearerAudience != "" {
		fields = append(fields, zap.String("bearer_audience", h.bearerAudience))
	}
	h.logger.Info("oidc_auth ready", fields...)
	for _, w := range h.startupWarnings() {
		h.logger.Warn(w)
	}
	go discoverAtStart(ctx, h.logger, h.Issuer, h.provider.cfg.timeout)
	go h.checkRoutingAtStart(ctx, h.logger)
}

// discoverAtStart asks the provider once, as a provider of its own (its own client, nothing
// shared with requests), and logs what it found or why it failed. It keeps nothing: requests
// discover on demand, so a provider that changes or goes down after the start is seen by them.
func discoverAtStart(ctx context.Context, logger *zap.Logger, issuer string, timeout time.Duration) {
	p := newProvider(ctx, providerConfig{issuer: issuer, timeout: timeout, now: time.Now, logger: logger})
	defer p.client.CloseIdleConnections()
	d, err := p.discover()
	if err != nil {
		logger.Warn("the provider's discovery failed at start; requests that need it get a 502 until it answers",
			zap.String("issuer", issuer), zap.String("cause", discoveryCause(issuer, err)))
		return
	}
	logger.Info("provider discovered", zap.String("issuer", issuer),
		zap.String("token_endpoint", d.endpoint.TokenURL), zap.String("userinfo_endpoint", d.userinfoURL),
		zap.String("end_session_endpoint", d.endSessionURL), zap.String("jwks_uri", d.keys.url))
}

// checkRoutingAtStart waits for the configuration that provisioned h to run, then checks that
// a browser sent to the callback reaches h, and logs an error if not.
func (h *Handler) checkRoutingAtStart(ctx caddy.Context, logger *zap.Logger) {
	deadline := time.Now().Add(routeCheckWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		srv, host, ok := h.runningServer()
		if !ok {
			continue
		}
		if !decidedByHostAndPath(srv.Routes) {
			// An IP allow-list, a protocol or a header matcher: only a real browser's request
			// tells; each sign-in is checked as it starts.
			logger.Info("the callback's routing depends on more than host and path: checked at each sign-in",
				zap.String("callback", h.callbackPath))
		} else if !h.callbackReaches(srv, host) {
			logger.Error(h.misroutedCallback(host))
		} else {
			logger.Info("the callback reaches this handler", zap.String("callback", h.callbackPath), zap.String("host", host))
		}
		return
	}
}

// runningServer finds the server of the running configuration whose routes hold h, and a
// host its routes to h match (empty when they name none).
func (h *Handler) runningServer() (*caddyhttp.Server, string, bool) {
	actx := caddy.ActiveContext()
	if actx.Context == nil {
		return nil, "", false
	}
	app, err := actx.AppIfConfigured("http")
	if err != nil {
		return nil, "", false
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil, "", false
	}
	for _, srv := range httpApp.Servers {
		if chain, found := h.routeChain(srv.Routes, nil); found {
			return srv, hostOf(chain), true
		}
	}
	return nil, "", false
}
