package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

const (
	// confirmTTL is how long the confirmation page may wait for its answer.
	confirmTTL = 5 * time.Minute
	// signedStateTTL is how long a minted impersonation state may wait to be used.
	signedStateTTL = 10 * time.Minute
	maxConfirmBody = 4 << 10
)

// askConfirmation parks the impersonated session in a short-lived sealed cookie, bound to a
// one-time token, and shows the page that asks the person to confirm.
func (h *Handler) askConfirmation(w http.ResponseWriter, r *http.Request, s *session.Session) {
	token := randomToken(24)
	payload := session.AppendString(nil, token)
	payload = append(payload, s.Marshal()...)
	exp := h.now().Add(confirmTTL)
	// Strict: only a request from this site's own page can carry it to the confirm endpoint.
	if !h.jar.SetChunkedSameSite(w, r, h.jar.ConfirmName(), h.sealer.Seal(session.PurposeConfirm, payload, exp), exp, http.SameSiteStrictMode) {
		h.event(evImpersonationDenied, r, entryFor(s).because("session too large for cookies"))
		h.writeError(w, r, errSessionTooLarge)
		return
	}
	h.writePage(w, http.StatusOK, "confirm.html", pageData{
		Title:        "Confirm impersonation",
		Host:         r.Host,
		Target:       firstNonEmpty(s.Email, s.PreferredUsername, s.Subject),
		Impersonator: firstNonEmpty(s.ImpersonatorEmail, s.ImpersonatorID),
		Token:        token,
		Action:       h.prefix + "confirm",
	})
}

// serveConfirm takes the answer of the confirmation page: a POST with the one-time token.
func (h *Handler) serveConfirm(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.writeError(w, r, errMethod)
		return
	}
	var who auditEntry // the parked session's identity, once its cookie opens
	refuse := func(reason string) {
		h.event(evImpersonationDenied, r, who.because(reason))
		h.writeError(w, r, errConfirmation)
	}
	if !sameOrigin(r) {
		refuse("confirmation posted from another origin")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConfirmBody)
	if err := r.ParseForm(); err != nil {
		refuse("confirmation form does not parse")
		return
	}
	v, ok := session.ReadChunked(r, h.jar.ConfirmName())
	if !ok {
		refuse("confirmation cookie missing")
		return
	}
	h.jar.ClearChunked(w, r, h.jar.ConfirmName())
	plain, err := h.sealer.Open(session.PurposeConfirm, v, h.now())
	if err != nil {
		refuse("confirmation cookie expired or invalid")
		return
	}
	d := session.NewDecoder(plain)
	token := d.Text()
	s := new(session.Session)
	if d.Failed() || s.Unmarshal([]byte(d.Rest())) != nil {
		refuse("confirmation cookie malformed")
		return
	}
	who = entryFor(s)
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(token)) != 1 {
		refuse("confirmation token does not match")
		return
	}
	if ok, _ := h.store.Claim(r.Context(), "confirm\x00"+tokenHash(token), h.now().Add(confirmTTL)); !ok {
		refuse("confirmation token already used")
		return
	}
	if r.PostForm.Get("decision") != "continue" {
		h.event(evImpersonationDenied, r, entryFor(s).because("cancelled at the confirmation page"))
		h.writePage(w, http.StatusOK, "error.html", pageData{Title: "Impersonation cancelled",
			Message: "Nothing was signed in. You can close this page."})
		return
	}
	h.event(evImpersonationConfirmed, r, entryFor(s))
	h.issueSession(w, r, s, h.imp.landing)
}

var errConfirmation = &pageError{http.StatusBadRequest, "confirmation_failed", "Impersonation not confirmed",
	"This confirmation is no longer valid: it was already used, it expired, or it came from elsewhere.", ""}

// stashOwnSession keeps the browser's current session aside when it belongs to the
// impersonator, so ending the impersonation gives it back.
func (h *Handler) stashOwnSession(w http.ResponseWriter, r *http.Request, imp *session.Session) {
	cur := h.openSession(r)
	if cur == nil || cur.Impersonated ||
		!(cur.Subject == imp.ImpersonatorID || (imp.ImpersonatorEmail != "" && strings.EqualFold(cur.Email, imp.ImpersonatorEmail))) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
		return
	}
	if !h.jar.SetChunked(w, r, h.jar.StashName(), h.sealer.Seal(session.PurposeStash, cur.Marshal(), cur.Expires), cur.Expires) {
		h.jar.ClearChunked(w, r, h.jar.StashName())
	}
}

// serveImpersonationEnd ends an impersonated session and restores the stashed one, if any.
func (h *Handler) serveImpersonationEnd(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.writeError(w, r, errMethod)
		return
	}
	if !sameOrigin(r) {
		h.writeError(w, r, errForbiddenOrigin)
		return
	}
	rd := safeReturnTo(r.URL.Query().Get("rd"), "/")
	s := h.openSession(r)
	if s == nil || !s.Impersonated {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	}
	h.event(evImpersonationEnded, r, entryFor(s))
	h.jar.ClearChunked(w, r, h.jar.Base)
	// Only the impersonator's own session comes back, whatever cookie sits in the stash.
	if own, _ := h.readSealedSession(r, h.jar.StashName(), session.PurposeStash); own != nil && !own.Impersonated &&
		(own.Subject == s.ImpersonatorID || (s.ImpersonatorEmail != "" && strings.EqualFold(own.Email, s.ImpersonatorEmail))) {
		own.LastSeen = h.now()
		h.writeSession(w, r, own)
	}
	h.jar.ClearChunked(w, r, h.jar.StashName())
	http.Redirect(w, r, rd, http.StatusSeeOther)
}

var errForbiddenOrigin = &pageError{http.StatusForbidden, "cross_origin", "Not allowed",
	"This request came from another site.", ""}

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

// A signed impersonation state is "i." and a MAC token (mactoken.go) whose bound data is
// sha256(the minting administrator's sub)[:8], so it works only for their own impersonations.
const signedStateBound = 8

type signedStateInfo struct {
	issued time.Time
	minter []byte
}

// serveMintState gives a signed-in, allowed impersonator a single-use state to paste into the
// provider's impersonation form.
func (h *Handler) serveMintState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		h.writeError(w, r, errMethod)
		return
	}
	s := h.currentSession(w, r)
	if s == nil {
		h.writeError(w, r, errUnauthenticated)
		return
	}
	// s.Email is set only when verified.
	if s.Impersonated || (h.imp.Restricted() && !h.imp.IsImpersonator(s.Subject, s.Email)) {
		h.writeError(w, r, errDenied)
		return
	}
	now := h.now()
	minter := sha256.Sum256([]byte(s.Subject))
	state, _ := mintMACToken(h.signedKeys[0], now, minter[:signedStateBound])
	writeJSON(w, http.StatusOK, map[string]any{
		"state":      "i." + state,
		"expires_at": now.Add(signedStateTTL).Unix(),
	})
}

func (h *Handler) parseSignedState(state string) (signedStateInfo, bool) {
	enc, ok := strings.CutPrefix(state, "i.")
	if !ok {
		return signedStateInfo{}, false
	}
	issued, _, minter, ok := openMACToken(h.signedKeys, enc, signedStateBound)
	return signedStateInfo{issued: issued, minter: minter}, ok
}

// signedStateMatches: the state was minted by the impersonator the provider names.
func (h *Handler) signedStateMatches(state string, imp *claims.Impersonator) bool {
	info, ok := h.parseSignedState(state)
	if !ok || imp == nil {
		return false
	}
	sum := sha256.Sum256([]byte(imp.ID))
	return subtle.ConstantTimeCompare(sum[:8], info.minter) == 1
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
