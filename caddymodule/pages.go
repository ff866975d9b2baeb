package caddymodule

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// pageError is a failure a person sees: a status, a clear sentence and, where it helps, a way
// to start again. Detail is text from the provider (error_description), always escaped.
type pageError struct {
	Status  int
	Code    string // for JSON answers
	Title   string
	Message string
	Detail  string
}

func (e *pageError) Error() string { return e.Code }

// withDetail returns a copy of e carrying detail (bounded, to keep pages small).
func (e *pageError) withDetail(detail string) *pageError {
	c := *e
	if len(detail) > 300 {
		detail = detail[:300] + "…"
	}
	c.Detail = detail
	return &c
}

var (
	errUnreachable = &pageError{http.StatusBadGateway, "provider_unreachable", "Sign-in is unavailable",
		"The identity provider is unreachable right now. Please try again in a moment.", ""}
	errProviderFailed = &pageError{http.StatusBadGateway, "provider_error", "Sign-in failed",
		"The identity provider did not complete the sign-in.", ""}
	errBadCallback = &pageError{http.StatusBadRequest, "bad_callback", "Sign-in could not be completed",
		"The sign-in response was not valid.", ""}
	errProviderRefused = &pageError{http.StatusBadRequest, "provider_refused", "Sign-in was refused",
		"The identity provider answered with an error.", ""}
	errStateMismatch = &pageError{http.StatusBadRequest, "state_mismatch", "Sign-in could not be completed",
		"The sign-in response does not belong to a sign-in started in this browser.", ""}
	errAttemptMissing = &pageError{http.StatusBadRequest, "attempt_missing", "Sign-in could not be completed",
		"This browser no longer has the sign-in it started: cookies may be blocked, or the attempt expired.", ""}
	errAttemptExpired = &pageError{http.StatusBadRequest, "attempt_expired", "Sign-in took too long",
		"The sign-in attempt expired before it was completed.", ""}
	errAttemptUsed = &pageError{http.StatusBadRequest, "attempt_used", "Sign-in could not be completed",
		"This sign-in response was already used. Sign in again.", ""}
	errDenied = &pageError{http.StatusForbidden, "access_denied", "Access denied",
		"You are signed in, but this site does not admit your account.", ""}
	errImpersonationRefused = &pageError{http.StatusForbidden, "impersonation_refused", "Impersonation refused",
		"This site does not accept this impersonated sign-in.", ""}
	errSessionTooLarge = &pageError{http.StatusBadGateway, "session_too_large", "Sign-in could not be completed",
		"The identity provider sent more about this account than fits in a session (too many groups or claims?).", ""}
	errUnauthenticated = &pageError{http.StatusUnauthorized, "unauthenticated", "Sign-in required",
		"You need to sign in to use this site.", ""}
	errInvalidToken = &pageError{http.StatusUnauthorized, "invalid_token", "Access token refused",
		"The access token is not valid here: expired, for another audience, or not signed by the identity provider.", ""}
	errBearerRequest = &pageError{http.StatusBadRequest, "invalid_request", "Bad request",
		"The request does not carry one bearer token as RFC 6750 describes.", ""}
	errInsufficientScope = &pageError{http.StatusForbidden, "insufficient_scope", "Access denied",
		"The access token does not grant the scopes this resource requires.", ""}
	errMisrouted = &pageError{http.StatusInternalServerError, "sign_in_misconfigured", "Sign-in is misconfigured",
		"This site's sign-in cannot complete: its callback address does not lead back here. The site's log says how to fix it.", ""}
	errMethod = &pageError{http.StatusMethodNotAllowed, "method_not_allowed", "Not allowed",
		"This address does not accept that kind of request.", ""}
	errTooManyAttempts = &pageError{http.StatusTooManyRequests, "too_many_attempts", "Too many sign-in attempts",
		"This browser sent too many sign-in responses in a short time. Wait a little and sign in again.", ""}
	errConfirmation = &pageError{http.StatusBadRequest, "confirmation_failed", "Impersonation not confirmed",
		"This confirmation is no longer valid: it was already used, it expired, or it came from elsewhere.", ""}
	errForbiddenOrigin = &pageError{http.StatusForbidden, "cross_origin", "Not allowed",
		"This request came from another site.", ""}
	errStoreUnavailable = &pageError{http.StatusServiceUnavailable, "store_unavailable", "Sign-in is unavailable",
		"This site cannot check sign-ins right now. Please try again in a moment.", ""}
	errManagedTrailer = &pageError{http.StatusBadRequest, "bad_request", "Bad request",
		"This request announces trailer fields that this site does not accept.", ""}
	errInternal = &pageError{http.StatusInternalServerError, "internal_error", "Something went wrong",
		"This site could not complete the request.", ""}
)

// errorBody is the JSON answer of a refusal.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

type pageData struct {
	Title, Message, Detail string
	Retry                  string // URL of "sign in again"; empty = none
	SwitchAccount          string // URL of "use another account" (a sign-out here and at the provider); empty = none
	Next                   string // URL of "continue"; empty = none
	Nonce                  string
	Action                 string
	Host, Target           string
	Impersonator, Token    string
	Unverified             string   // an email nothing vouches for, shown as such
	Choices                []choice // the chooser's providers
}

// writeError answers with e: a small HTML page for browsers, JSON for everything else.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, e *pageError) {
	if !wantsHTML(r) {
		writeJSON(w, e.Status, errorBody{e.Code, e.Message})
		return
	}
	d := pageData{Title: e.Title, Message: e.Message, Detail: e.Detail}
	if e.Status != http.StatusMethodNotAllowed {
		d.Retry = h.retryURL
	}
	if e.Code == errDenied.Code {
		d.SwitchAccount = h.switchAccountURL()
	}
	h.writePage(w, e.Status, "error.html", d)
}

// switchAccountURL is where "use another account" goes on the Access denied page: the
// logout endpoint, which ends the provider's session too, so that signing in again asks who
// rather than bringing the same account back to the same 403. It is a same-origin link, not
// a form: a form's redirect on to the provider would meet the page's CSP form-action 'self'
// in browsers that apply it to redirects. The logout endpoint's own checks (same-origin
// requests only; others get its confirmation page) are unchanged. It returns to the site's
// root, the post-logout URL most likely registered at the provider.
func (h *Handler) switchAccountURL() string {
	return h.prefix + "logout?rd=%2F"
}

// continueTo answers with a page that moves the browser on to target (a same-origin URL) by
// itself: a navigation of its own, not a redirect of the request that got here.
func (h *Handler) continueTo(w http.ResponseWriter, target, title, message string) {
	w.Header().Set("Refresh", "0; url="+target)
	h.writePage(w, http.StatusOK, "error.html", pageData{Title: title, Message: message, Next: target})
}

// writePage renders a page with headers that forbid framing, caching and any script or style
// but the page's own.
func (h *Handler) writePage(w http.ResponseWriter, status int, name string, d pageData) {
	d.Nonce = randomToken(16)
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, d); err != nil {
		h.logger.Error("rendering page", zap.Error(err))
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+d.Nonce+"'; style-src 'nonce-"+
		d.Nonce+"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// wantsHTML: a request whose Accept names text/html gets pages; API clients get JSON.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isNavigation tells a browser's top-level navigation, which may be sent to the provider,
// from an API call, which gets 401: GET or HEAD, Accept wants HTML, not X-Requested-With,
// and Sec-Fetch-Mode navigate or absent.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	return wantsHTML(r)
}
