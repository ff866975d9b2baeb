package caddymodule

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

const (
	// confirmTTL is how long the confirmation page may wait for its answer.
	confirmTTL     = 5 * time.Minute
	maxConfirmBody = 4 << 10
)

// askConfirmation parks the impersonated session, and the claims the policy decided on, in a
// short-lived sealed cookie bound to a one-time token, and shows the page that asks the
// person to confirm.
func (h *Handler) askConfirmation(w http.ResponseWriter, r *http.Request, s *session.Session, id *claims.Identity) error {
	token := randomToken(24)
	ids, err := json.Marshal(id.Claims)
	if err != nil {
		return refuse(errBadCallback, evImpersonationDenied, "claims do not encode").about(entryFor(s)).causedBy(err)
	}
	payload := session.AppendString(nil, token)
	payload = session.AppendString(payload, string(ids))
	payload = append(payload, s.Marshal()...)
	exp := h.now().Add(confirmTTL)
	// Strict: only a request from this site's own page can carry it to the confirm endpoint.
	sealed := h.sealer.Seal(session.PurposeConfirm, payload, exp)
	if len(sealed) > cookieBudget(r) || !h.jar.SetChunkedSameSite(w, r, h.jar.ConfirmName(), sealed, exp, http.SameSiteStrictMode) {
		return refuse(errSessionTooLarge, evImpersonationDenied, "session too large for cookies").about(entryFor(s))
	}
	// Only what the provider vouches for is shown as who someone is: a verified email (the
	// session keeps no other), else the subject; an unverified email is shown as such.
	d := pageData{
		Title:        "Confirm impersonation",
		Host:         r.Host,
		Target:       firstNonEmpty(s.Email, s.Subject),
		Impersonator: s.ImpersonatorID,
		Token:        token,
		Action:       h.prefix + "confirm",
	}
	if s.ImpersonatorEmailVerified {
		d.Impersonator = s.ImpersonatorEmail
	} else if s.ImpersonatorEmail != "" {
		d.Unverified = s.ImpersonatorEmail
	}
	h.writePage(w, http.StatusOK, "confirm.html", d)
	return nil
}

// serveConfirm takes the answer of the confirmation page: a POST with the one-time token.
func (h *Handler) serveConfirm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	s, id, err := h.openConfirmation(w, r)
	if err != nil {
		return err
	}
	if r.PostForm.Get("decision") != "continue" {
		h.event(evImpersonationDenied, r, entryFor(s).because("cancelled at the confirmation page"))
		h.writePage(w, http.StatusOK, "error.html", pageData{Title: "Impersonation cancelled",
			Message: "Nothing was signed in. You can close this page."})
		return nil
	}
	// The policy may have changed while the page waited (a configuration reload): it is
	// asked again, on the same claims.
	if ok, why := h.imp.Decide(r.Context(), id, requestVars(r)); !ok {
		return impersonationDenied(why).about(entryFor(s))
	}
	if ok, why := h.allow.Admit(r.Context(), id, requestVars(r)); !ok {
		return impersonationDenied("target not admitted: " + why).about(entryFor(s))
	}
	h.event(evImpersonationConfirmed, r, entryFor(s))
	return h.issueSession(w, r, s, h.imp.landing)
}

// openConfirmation checks a confirmation post — same origin, its parked session's cookie, the
// one-time token, used once and minted since the store's memory began — and returns the
// parked session and the identity the policy decided on.
func (h *Handler) openConfirmation(w http.ResponseWriter, r *http.Request) (*session.Session, *claims.Identity, error) {
	fail := func(reason string) error { return refuse(errConfirmation, evImpersonationDenied, reason) }
	if !sameOrigin(r) {
		return nil, nil, fail("confirmation posted from another origin")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConfirmBody)
	if err := r.ParseForm(); err != nil {
		return nil, nil, fail("confirmation form does not parse")
	}
	v, ok := session.ReadChunked(r, h.jar.ConfirmName())
	if !ok {
		return nil, nil, fail("confirmation cookie missing")
	}
	h.jar.ClearChunked(w, r, h.jar.ConfirmName())
	now := h.now()
	plain, err := h.sealer.Open(session.PurposeConfirm, v, now)
	if err != nil {
		return nil, nil, fail("confirmation cookie expired or invalid")
	}
	d := session.NewDecoder(plain)
	token, rawClaims := d.Text(), d.Text()
	s := new(session.Session)
	var c claims.Set
	if d.Failed() || s.Unmarshal([]byte(d.Rest())) != nil || json.Unmarshal([]byte(rawClaims), &c) != nil {
		return nil, nil, fail("confirmation cookie malformed")
	}
	who := entryFor(s)
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(token)) != 1 {
		return nil, nil, refuse(errConfirmation, evImpersonationDenied, "confirmation token does not match").about(who)
	}
	// The session was made when the page was shown (s.Created): a restart since then left
	// the store without the memory of this token's use.
	if h.beforeHorizon(s.Created) {
		return nil, nil, refuse(errConfirmation, evImpersonationDenied, "confirmation older than the store's memory (restart)").about(who)
	}
	ok, err = h.store.Claim(r.Context(), keyConfirm+tokenHash(token), now.Add(confirmTTL))
	switch {
	case err != nil:
		return nil, nil, refuse(errStoreUnavailable, evImpersonationDenied, "store unavailable: "+err.Error()).about(who).causedBy(err)
	case !ok:
		return nil, nil, refuse(errConfirmation, evImpersonationDenied, "confirmation token already used").about(who)
	}
	id := claims.NewIdentity(c, h.groupsClaim())
	id.Imp = &claims.Impersonator{ID: s.ImpersonatorID, Email: s.ImpersonatorEmail, EmailVerified: s.ImpersonatorEmailVerified}
	return s, id, nil
}

// sameOrigin refuses requests that a browser marks as coming from another origin.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	// A page with Referrer-Policy no-referrer (ours) posts with Origin: null; Sec-Fetch-Site,
	// checked above, still tells where such a post came from.
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		// The host decides: behind a proxy that ends TLS, the scheme Caddy sees is not the
		// browser's.
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	return true
}

// foreignReferer reports whether the request names a referring page on another host.
func foreignReferer(r *http.Request) bool {
	ref := r.Header.Get("Referer")
	if ref == "" {
		return false
	}
	u, err := url.Parse(ref)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
