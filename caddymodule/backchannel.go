package caddymodule

import (
	"encoding/json"
	"mime"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// OpenID Connect Back-Channel Logout 1.0: the provider POSTs a logout token when a user's
// session there ends, and every session of this site that belongs to it ends too, on every
// instance sharing the store.

const (
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	// maxLogoutTokenAge bounds how old a logout token's iat may be.
	maxLogoutTokenAge = 5 * time.Minute
	maxLogoutBody     = 16 << 10
)

var errBadLogoutToken = &pageError{http.StatusBadRequest, "invalid_request", "Bad logout token",
	"The logout token is not valid.", ""}

// serveBackchannelLogout verifies the logout token and revokes the sessions it names. A bad
// token gets a 400 with no detail; why is in the audit log.
func (h *Handler) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	bad := func(reason string) error {
		return refuse(errBadLogoutToken, evSessionRevoked, "back-channel logout refused: "+reason)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return bad("not a form post")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		return bad("form does not parse")
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return bad("no logout_token")
	}
	// Forged tokens with unknown keys make the module ask the provider for its key set.
	if err := h.admitUnsolicited(r); err != nil {
		return err
	}
	d, err := h.provider.get()
	if err != nil {
		return refuse(errUnreachable, "", "").causedBy(err)
	}
	ctx := h.provider.clientContext(r.Context())
	tok, err := d.p.VerifierContext(h.provider.ctx, &oidc.Config{ClientID: h.ClientID, Now: h.now,
		SkipExpiryCheck: true}).Verify(ctx, raw)
	if err != nil {
		return bad("does not verify")
	}
	var c struct {
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		Nonce  *string                    `json:"nonce"`
		Events map[string]json.RawMessage `json:"events"`
		Exp    int64                      `json:"exp"`
	}
	if err := tok.Claims(&c); err != nil {
		return bad("claims do not decode")
	}
	now := h.now()
	switch {
	case c.Nonce != nil:
		return bad("carries a nonce")
	case c.Events[backchannelEvent] == nil:
		return bad("not a back-channel logout event")
	case c.SID == "" && tok.Subject == "":
		return bad("names neither sid nor sub")
	case c.JTI == "":
		return bad("no jti")
	case tok.IssuedAt.IsZero() || now.Sub(tok.IssuedAt) > maxLogoutTokenAge || tok.IssuedAt.After(now.Add(maxIssuedAtSkew)):
		return bad("iat missing or out of range")
	case c.Exp != 0 && !now.Before(time.Unix(c.Exp, 0)):
		return bad("expired")
	}
	switch ok, err := h.store.Claim(r.Context(), keyLogoutToken+tokenHash(c.JTI), now.Add(maxLogoutTokenAge+maxIssuedAtSkew)); {
	case err != nil:
		return refuse(errStoreUnavailable, evSessionRevoked, "store unavailable: "+err.Error()).causedBy(err)
	case !ok:
		return bad("jti replayed")
	}
	recs, err := h.store.Sessions(r.Context(), store.Filter{SID: c.SID, Subject: tok.Subject})
	if err == nil {
		err = h.store.Revoke(r.Context(), recs)
	}
	if err != nil {
		return refuse(errStoreUnavailable, evSessionRevoked, "store unavailable: "+err.Error()).causedBy(err)
	}
	for _, rec := range recs {
		h.event(evSessionRevoked, r, auditEntry{SessionID: rec.ID, Subject: rec.Subject, ImpersonatorID: rec.Impersonator,
			Reason: "back-channel logout"})
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}
