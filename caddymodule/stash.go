package caddymodule

import (
	"net/http"
	"strings"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// stashOwnSession keeps the browser's current session aside when it belongs to the
// impersonator, so ending the impersonation gives it back.
func (h *Handler) stashOwnSession(w http.ResponseWriter, r *http.Request, imp *session.Session) {
	cur := h.openSession(r)
	if !ownSessionOf(cur, imp) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
		return
	}
	if !h.jar.SetChunked(w, r, h.jar.StashName(), h.sealer.Seal(session.PurposeStash, cur.Marshal(), cur.Expires), cur.Expires) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
	}
}

// serveImpersonationEnd ends an impersonated session and restores the stashed one, if any.
func (h *Handler) serveImpersonationEnd(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return refuse(errMethod, "", "")
	}
	if !sameOrigin(r) {
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
	if own, _ := h.readSealedSession(r, h.jar.StashName(), session.PurposeStash); ownSessionOf(own, s) {
		own.LastSeen = h.now()
		h.writeSession(w, r, own)
	}
	h.jar.ClearChunked(w, r, h.jar.StashName())
	http.Redirect(w, r, rd, http.StatusSeeOther)
	return nil
}

// ownSessionOf reports whether own is the impersonator's own session of the impersonated one.
func ownSessionOf(own, imp *session.Session) bool {
	return own != nil && !own.Impersonated &&
		(own.Subject == imp.ImpersonatorID || (imp.ImpersonatorEmail != "" && strings.EqualFold(own.Email, imp.ImpersonatorEmail)))
}
