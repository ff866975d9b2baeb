package caddymodule

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// A refusal is a request the module answers with an error: the page (or JSON) a person sees,
// and the audit event that records why. Flows return one as their error; answer is the one
// place that turns it into a response.
type refusal struct {
	page       *pageError
	event      string     // the audit event; "" records none
	entry      auditEntry // who it is about, and the reason
	cause      error      // for the operator's log; never shown
	retryAfter int        // seconds, for a 429
	challenge  string     // WWW-Authenticate, for a bearer token refused (RFC 6750)
	api        bool       // answered in JSON whatever the request accepts
}

// Error is the sentence the person sees: {err.message} in a handle_errors block.
func (e *refusal) Error() string { return e.page.Message }

func (e *refusal) Unwrap() error { return e.cause }

// refuse is a refusal with page, audited as event with the reason.
func refuse(page *pageError, event, reason string) *refusal {
	return &refusal{page: page, event: event, entry: auditEntry{Reason: reason}}
}

// loginFailed is a refusal of a sign-in, audited as login_failed.
func loginFailed(page *pageError, reason string) *refusal {
	return refuse(page, evLoginFailed, reason)
}

// impersonationDenied is a refused impersonation, audited as impersonation_denied.
func impersonationDenied(reason string) *refusal {
	return refuse(errImpersonationRefused, evImpersonationDenied, reason)
}

// about names who the refusal concerns, keeping its reason.
func (e *refusal) about(who auditEntry) *refusal {
	who.Reason = e.entry.Reason
	e.entry = who
	return e
}

// quiet is the refusal without its audit event: the same decision, already recorded.
func (e *refusal) quiet() *refusal {
	c := *e
	c.event = ""
	return &c
}

// causedBy keeps the underlying error for the operator's log.
func (e *refusal) causedBy(err error) *refusal {
	e.cause = err
	return e
}

// routedStatuses are the refusals a site's handle_errors block may render; the others (a bad
// callback, a wrong method) always get the module's own page.
var routedStatuses = map[int]bool{
	http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusTooManyRequests: true,
	http.StatusBadGateway: true, http.StatusServiceUnavailable: true,
}

// answer turns what a flow returned into the response: nothing for nil; for a refusal, its
// audit event, then Caddy's error handling when the site has a handle_errors block for it,
// else the module's page or JSON. Any other error is unexpected: logged, and answered 500
// without detail.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, err error) error {
	if err == nil {
		return nil
	}
	var rf *refusal
	if !errors.As(err, &rf) {
		h.logger.Error("unexpected error", zap.Error(err))
		rf = &refusal{page: errInternal}
	}
	if rf.event != "" {
		h.event(rf.event, r, rf.entry)
	}
	if rf.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(rf.retryAfter))
	}
	if rf.challenge != "" {
		w.Header().Set("WWW-Authenticate", rf.challenge)
	}
	if routedStatuses[rf.page.Status] && hasErrorRoutes(r) {
		w.Header().Set("Cache-Control", "no-store")
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("oidc_auth.error.code", rf.page.Code)
			repl.Set("oidc_auth.error.title", rf.page.Title)
			repl.Set("oidc_auth.error.message", rf.page.Message)
			repl.Set("oidc_auth.error.detail", rf.page.Detail)
			repl.Set("oidc_auth.error.reason", rf.entry.Reason)
			repl.Set("oidc_auth.error.retry", h.startURL("/"))
			if rf.page.Code == errDenied.Code {
				repl.Set("oidc_auth.error.switch_account", h.switchAccountURL())
			}
		}
		return caddyhttp.Error(rf.page.Status, rf)
	}
	if rf.api {
		writeJSON(w, rf.page.Status, errorBody{rf.page.Code, rf.page.Message})
		return nil
	}
	h.writeError(w, r, rf.page)
	return nil
}

// hasErrorRoutes reports whether the request's server has a handle_errors block.
func hasErrorRoutes(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// pageOf is the page of a refusal, nil for any other error.
func pageOf(err error) *pageError {
	var rf *refusal
	if errors.As(err, &rf) {
		return rf.page
	}
	return nil
}
