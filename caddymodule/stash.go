package caddymodule

import (
	"net/http"

	"github.com/relyingparty/caddy-oidc-auth/internal/policy"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// stashOwnSession keeps the browser's current session aside when it belongs to the
// impersonator, so ending the impersonation gives it back.
func (h *Handler) stashOwnSession(w http.ResponseWriter, r *http.Request, cur, imp *session.Session) {
	if !ownSessionOf(cur, imp) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
		return
	}
	// Its idle clock runs from now: restored later, it must not have been idle longer than
	// session_idle since it was put aside.
	cur.LastSeen = h.now()
	if sealed, until := h.sealSession(session.PurposeStash, cur); len(sealed) > cookieBudget(r) ||
		!h.jar.SetChunked(w, r, h.jar.StashName(), sealed, until) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
	}
}

// serveImpersonationEnd ends an impersonated session and restores the stashed one, if any.
func (h *Handler) serveImpersonationEnd(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	if !sameOrigin(r) || foreignReferer(r) {
		return refuse(errForbiddenOrigin, "", "")
	}
	rd := safeReturnTo(r.URL.Query().Get("rd"), "/")
	s := h.openSession(r)
	if s == nil || !s.Impersonated {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return nil
	}
	h.event(evImpersonationEnded, r, entryFor(s))
	h.jar.ClearChunked(w, r, h.jar.Base)
	// Only the impersonator's own session comes back, whatever cookie sits in the stash.
	if own, _, _ := h.readSealedSession(r, h.jar.StashName(), session.PurposeStash); ownSessionOf(own, s) {
		own.LastSeen = h.now()
		_ = h.writeSession(w, r, own)
	}
	h.jar.ClearChunked(w, r, h.jar.StashName())
	http.Redirect(w, r, rd, http.StatusSeeOther)
	return nil
}

// ownSessionOf reports whether own is the impersonator's own session of the impersonated one:
// the same subject, or the same email where both are verified (a session keeps only a verified
// email).
func ownSessionOf(own, imp *session.Session) bool {
	return own != nil && !own.Impersonated && (own.Subject == imp.ImpersonatorID ||
		(imp.ImpersonatorEmailVerified && policy.SameEmail(own.Email, imp.ImpersonatorEmail)))
}
