package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// The exact causes of failures, in words an operator can act on: what the 502 page, the audit
// reason and the log say. They name configuration (the provider's URLs) and what the provider
// answered, never a token, a code or a secret.

// discoveryError is a discovery that failed, with its cause in short.
type discoveryError struct {
	cause string // e.g. "connection refused (127.0.0.1:8080)"
	err   error
}

func (e *discoveryError) Error() string {
	return errProviderUnreachable.Error() + ": " + e.cause + ": " + e.err.Error()
}

func (e *discoveryError) Unwrap() []error { return []error{errProviderUnreachable, e.err} }

// causeOf is the short cause of a failed discovery.
func causeOf(err error) string {
	var de *discoveryError
	if errors.As(err, &de) {
		return de.cause
	}
	return "discovery failed"
}

// unreachable is the refusal of a request that needs the provider when discovery failed: the
// 502 page, whose detail says why, and login_failed with the cause.
func unreachable(err error) *refusal {
	cause := causeOf(err)
	return loginFailed(errUnreachable.withDetail("Discovery failed: "+forPage(cause)+"."), "provider unreachable: "+cause).causedBy(err)
}

// discoveryCause says why discovery at issuer failed.
func discoveryCause(issuer string, err error) string {
	var mismatch *oidc.IssuerMismatchError
	if errors.As(err, &mismatch) {
		cause := fmt.Sprintf("issuer mismatch: configured %q, the discovery document says %q", mismatch.Provided, mismatch.Discovered)
		if strings.TrimRight(mismatch.Provided, "/") == strings.TrimRight(mismatch.Discovered, "/") {
			cause += " (a trailing '/' differs)"
		}
		return cause
	}
	if c := transportCause(err); c != "" {
		return c
	}
	msg := err.Error()
	if m := httpStatusPrefix.FindString(msg); m != "" {
		// go-oidc reports a non-200 answer as "<status>: <body>"; the body is left out.
		return fmt.Sprintf("discovery answered HTTP %s at %s", strings.TrimSuffix(m, ":"), wellKnownURL(issuer))
	}
	if strings.Contains(msg, "failed to decode provider discovery object") || strings.Contains(msg, "decoding discovery document") {
		return "the discovery document at " + wellKnownURL(issuer) + " is not valid JSON"
	}
	return "discovery failed at " + wellKnownURL(issuer)
}

// httpStatusPrefix matches the status line go-oidc puts before a non-200 answer's body.
var httpStatusPrefix = regexp.MustCompile(`^[1-5][0-9][0-9] [^:]*:`)

func wellKnownURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// transportCause names a failure to reach the provider at all: TLS, connection refused,
// timeout, DNS. "" for anything else.
func transportCause(err error) string {
	var (
		recordHeader tls.RecordHeaderError
		unknownCA    x509.UnknownAuthorityError
		hostname     x509.HostnameError
		invalid      x509.CertificateInvalidError
		verification *tls.CertificateVerificationError
		dnsErr       *net.DNSError
		opErr        *net.OpError
		netErr       net.Error
	)
	switch {
	case errors.As(err, &recordHeader):
		return "TLS error: the provider did not answer in TLS (an https issuer for an http provider?)"
	case errors.As(err, &unknownCA):
		return "TLS error: the provider's certificate is signed by an unknown authority"
	case errors.As(err, &hostname):
		return "TLS error: the provider's certificate is not valid for " + hostname.Host
	case errors.As(err, &invalid):
		return "TLS error: the provider's certificate is not valid (" + certInvalidReason(invalid.Reason) + ")"
	case errors.As(err, &verification):
		return "TLS error: the provider's certificate does not verify"
	case errors.As(err, &dnsErr):
		return "DNS failure: " + dnsErr.Name + " not found"
	case errors.Is(err, syscall.ECONNREFUSED):
		if errors.As(err, &opErr) && opErr.Addr != nil {
			return "connection refused (" + opErr.Addr.String() + ")"
		}
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout: the provider did not answer in time"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the provider closed the connection"
	case errors.As(err, &opErr):
		return "network error: " + opErr.Op + " " + opErr.Err.Error()
	}
	if msg := err.Error(); strings.Contains(msg, "server gave HTTP response to HTTPS client") {
		return "TLS error: the provider answered in plain HTTP (an https issuer for an http provider?)"
	} else if strings.Contains(msg, "malformed HTTP response") {
		return "the provider's answer is not HTTP (an http issuer for an https provider?)"
	}
	return ""
}

func certInvalidReason(r x509.InvalidReason) string {
	switch r {
	case x509.Expired:
		return "expired or not yet valid: check the clocks"
	case x509.NotAuthorizedToSign:
		return "signed by a certificate that is not a CA"
	case x509.IncompatibleUsage:
		return "not for server authentication"
	}
	return "rejected"
}

// exchangeRefusal is the provider's refusal of a code exchange in words: the audit reason
// ("code exchange refused: CODE: description") and the page's detail (the code and what to
// check). The description is the provider's, server to server, and bounded.
func exchangeRefusal(re *oauth2.RetrieveError) (reason, detail string) {
	code := re.ErrorCode
	if code == "" {
		code = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
	}
	reason = "code exchange refused: " + truncate(oneLine(code), 60)
	if d := oneLine(re.ErrorDescription); d != "" {
		reason += ": " + truncate(d, 200)
	}
	detail = "The identity provider refused the code exchange: " + truncate(oneLine(code), 60)
	if hint := exchangeHints[code]; hint != "" {
		detail += " (" + hint + ")"
	}
	return reason, detail + "."
}

// exchangeHints say what an operator checks for the token endpoint's error codes (RFC 6749 §5.2).
var exchangeHints = map[string]string{
	"invalid_client":         "check client_id, client_secret and client_auth_method",
	"invalid_grant":          "the code expired or was used, or the callback URL is not the one registered at the provider",
	"unauthorized_client":    "the application may not use the authorization code grant: check its settings at the provider",
	"unsupported_grant_type": "the provider does not accept authorization_code for this application",
	"invalid_request":        "the provider did not accept the request",
	"invalid_scope":          "check scopes",
}

// idTokenProblem says why an ID token does not verify: short (for the page) and in full
// (for the audit reason). Times are this server's; a token from the code exchange that is
// expired or not yet valid means the clocks disagree.
func idTokenProblem(err error, now time.Time) (short, full string) {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return "it has expired (check the clocks)", fmt.Sprintf("expired at %s, %s before this server's time (check the clocks)",
			expired.Expiry.UTC().Format(time.RFC3339), now.Truncate(time.Second).Sub(expired.Expiry))
	case strings.Contains(msg, "before the nbf"):
		return "it is not yet valid (check the clocks)", "not yet valid: nbf is after this server's time (check the clocks)"
	case strings.Contains(msg, "issued by a different provider"):
		return "it was issued by another issuer", "wrong issuer: " + truncate(strings.TrimPrefix(msg, "oidc: id token "), 200)
	case strings.Contains(msg, "expected audience"):
		return "it is for another client", "wrong audience: " + truncate(strings.TrimPrefix(msg, "oidc: "), 200)
	case strings.Contains(msg, "malformed jwt"):
		return "it is malformed", "malformed"
	case strings.Contains(msg, "signature"), strings.Contains(msg, "signed"), strings.Contains(msg, "algorithm"):
		return "its signature does not verify", "bad signature"
	}
	return "it does not verify", truncate(strings.TrimPrefix(msg, "oidc: "), 200)
}

// oneLine keeps text from the provider on one printable line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
}

// truncate bounds s to n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// exchangeFailed is the refusal of a code exchange the provider did not answer properly (5xx,
// 429, a network failure): the 502 page, with the cause when it is a transport one.
func exchangeFailed(err error) *refusal {
	reason, page := withCause("code exchange failed", err), errUnreachable
	if c := transportCause(err); c != "" {
		page = errUnreachable.withDetail("The code exchange failed: " + forPage(c) + ".")
	} else {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			reason += fmt.Sprintf(": HTTP %d", re.Response.StatusCode)
		}
	}
	return loginFailed(page, reason).causedBy(err)
}

// forPage is a cause as anyone may read it on a page: without the addresses and host names of
// the network between Caddy and the provider, which the log and the audit reason keep.
func forPage(cause string) string {
	switch {
	case strings.HasPrefix(cause, "connection refused"):
		return "connection refused"
	case strings.HasPrefix(cause, "DNS failure"):
		return "DNS failure: the provider's host name does not resolve"
	case strings.HasPrefix(cause, "network error"):
		return "network error"
	}
	return cause
}

// withCause appends to reason the transport cause of err, when it has one.
func withCause(reason string, err error) string {
	if c := transportCause(err); c != "" {
		return reason + ": " + c
	}
	return reason
}
