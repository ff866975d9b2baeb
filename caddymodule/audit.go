package caddymodule

import (
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Audit events, on the logger http.handlers.oidc_auth.audit.
const (
	evLogin                  = "login"
	evLoginFailed            = "login_failed"
	evLogout                 = "logout"
	evImpersonationStarted   = "impersonation_started"
	evImpersonationDenied    = "impersonation_denied"
	evImpersonationConfirmed = "impersonation_confirmed"
	evImpersonationEnded     = "impersonation_ended"
	evUnsolicitedBounced     = "unsolicited_bounced"
	evSessionRejected        = "session_rejected"
	evAccessDenied           = "access_denied" // a session refused by the handler serving a request
	evSessionRevoked         = "session_revoked"
	evAssertionKeyRotated    = "assertion_key_rotated" // through the admin API
)

// auditEntry is who an audit event is about. Tokens, codes, cookies and secrets have no field here.
// Emails travel with their verification: an unverified one is recorded as such, never as
// identity.
type auditEntry struct {
	SessionID                 string
	Subject                   string
	Email                     string
	EmailVerified             bool
	ImpersonatorID            string
	ImpersonatorEmail         string
	ImpersonatorEmailVerified bool
	Reason                    string
}

// because returns the entry with the reason of the event.
func (e auditEntry) because(reason string) auditEntry {
	e.Reason = reason
	return e
}

func entryFor(s *session.Session) auditEntry {
	// A session keeps only a verified email.
	return auditEntry{SessionID: s.ID, Subject: s.Subject, Email: s.Email, EmailVerified: s.Email != "",
		ImpersonatorID: s.ImpersonatorID, ImpersonatorEmail: s.ImpersonatorEmail,
		ImpersonatorEmailVerified: s.ImpersonatorEmailVerified}
}

func entryForIdentity(id *claims.Identity) auditEntry {
	e := auditEntry{Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified}
	if id.Imp != nil {
		e.ImpersonatorID, e.ImpersonatorEmail, e.ImpersonatorEmailVerified = id.Imp.ID, id.Imp.Email, id.Imp.EmailVerified
	}
	return e
}

// event writes one audit event. The time is the logger's own timestamp.
func (h *Handler) event(name string, r *http.Request, e auditEntry) {
	h.metrics.observeEvent(name, e.Reason)
	ce := h.audit.Check(zapcore.InfoLevel, name)
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("event", name),
		zap.String("session_id", e.SessionID),
		zap.String("subject", e.Subject),
		zap.String("email", e.Email),
		zap.String("client_ip", clientIP(r)),
		zap.String("user_agent", r.UserAgent()),
		zap.String("host", r.Host),
	}
	if e.Email != "" {
		fields = append(fields, zap.Bool("email_verified", e.EmailVerified))
	}
	if e.ImpersonatorID != "" || e.ImpersonatorEmail != "" {
		fields = append(fields, zap.String("impersonator", e.ImpersonatorID),
			zap.String("impersonator_email", e.ImpersonatorEmail))
		if e.ImpersonatorEmail != "" {
			fields = append(fields, zap.Bool("impersonator_email_verified", e.ImpersonatorEmailVerified))
		}
	}
	if e.Reason != "" {
		fields = append(fields, zap.String("reason", e.Reason))
	}
	ce.Write(fields...)
}

// clientIP is the client address Caddy determined (honouring trusted_proxies), else the peer.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
