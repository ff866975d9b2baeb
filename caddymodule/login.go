package caddymodule

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// maxAttempts bounds the attempt cookies a browser carries; the oldest is dropped.
const maxAttempts = 4

// attempt is one login in progress, sealed in its own cookie named after its state.
type attempt struct {
	State    string
	Nonce    string
	Verifier string
	ReturnTo string
	Issued   time.Time
}

func (a *attempt) marshal() []byte {
	var b []byte
	for _, v := range []string{a.State, a.Nonce, a.Verifier, a.ReturnTo} {
		b = session.AppendString(b, v)
	}
	return binary.AppendVarint(b, a.Issued.Unix())
}

func (a *attempt) unmarshal(b []byte) bool {
	d := session.NewDecoder(b)
	for _, p := range []*string{&a.State, &a.Nonce, &a.Verifier, &a.ReturnTo} {
		*p = d.Text()
	}
	a.Issued = time.Unix(d.Varint(), 0)
	return !d.Failed() && d.Rest() == ""
}

// startLogin redirects the browser to the provider for a login that returns to returnTo.
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) error {
	if !h.callbackRouted(r) {
		// The provider would send the browser, its code and state, to a route without this
		// handler: to the application.
		return refuse(errMisrouted, "", "")
	}
	d, err := h.provider.get()
	if err != nil {
		return unreachable(err)
	}
	now := h.now()
	state, info := h.states.mintLogin(now)
	a := attempt{
		State:    state,
		Nonce:    randomToken(16),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Issued:   info.issued,
	}
	h.dropOldAttempts(w, r, now)
	h.jar.Set(w, h.jar.AttemptPrefix()+info.id, h.sealer.Seal(session.PurposeAttempt, a.marshal(), now.Add(attemptTTL)),
		now.Add(attemptTTL), h.attemptSameSite())

	opts := []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("nonce", a.Nonce),
		oauth2.S256ChallengeOption(a.Verifier),
	}
	if h.Audience != "" {
		opts = append(opts, oauth2.SetAuthURLParam("audience", h.Audience))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, h.provider.oauth2Config(d, h.redirectURL(r)).AuthCodeURL(state, opts...), http.StatusFound)
	return nil
}

// attemptSameSite: the provider sends the browser back with a cross-site navigation, which
// carries Lax cookies but never Strict ones; None is kept when the site asked for it.
func (h *Handler) attemptSameSite() http.SameSite {
	if h.jar.SameSite == http.SameSiteNoneMode {
		return http.SameSiteNoneMode
	}
	return http.SameSiteLaxMode
}

// dropOldAttempts keeps the number of attempt cookies below maxAttempts by clearing expired,
// unreadable and then the oldest ones, so the Cookie header never grows without bound.
func (h *Handler) dropOldAttempts(w http.ResponseWriter, r *http.Request, now time.Time) {
	type live struct {
		name   string
		issued time.Time
	}
	var alive []live
	for _, c := range session.CookiesWithPrefix(r, h.jar.AttemptPrefix()) {
		plain, err := h.sealer.Open(session.PurposeAttempt, c[1], now)
		var a attempt
		if err != nil || !a.unmarshal(plain) {
			h.jar.Clear(w, c[0])
			continue
		}
		alive = append(alive, live{c[0], a.Issued})
	}
	slices.SortFunc(alive, func(a, b live) int { return a.issued.Compare(b.issued) })
	for len(alive) >= maxAttempts {
		h.jar.Clear(w, alive[0].name)
		alive = alive[1:]
	}
}

// takeAttempt finds, opens and clears the attempt cookie of a login state. It reports whether
// the cookie was there at all, so a missing cookie can be told from a bad one.
func (h *Handler) takeAttempt(w http.ResponseWriter, r *http.Request, state string, info loginState) (*attempt, bool) {
	name := h.jar.AttemptPrefix() + info.id
	v, ok := session.CookieValue(r, name)
	if !ok {
		return nil, false
	}
	h.jar.Clear(w, name)
	plain, err := h.sealer.Open(session.PurposeAttempt, v, h.now())
	var a attempt
	if err != nil || !a.unmarshal(plain) || subtle.ConstantTimeCompare([]byte(a.State), []byte(state)) != 1 {
		return nil, true
	}
	return &a, true
}

// consumeAttempt marks a login attempt used in the store, refusing one used before.
func (h *Handler) consumeAttempt(r *http.Request, info loginState) error {
	ok, err := h.store.Claim(r.Context(), keyAttempt+info.id, info.issued.Add(attemptTTL+maxIssuedAtSkew))
	switch {
	case err != nil:
		return loginFailed(errStoreUnavailable, "store unavailable: "+err.Error()).causedBy(err)
	case !ok:
		return loginFailed(errAttemptUsed, "login attempt already used")
	}
	return nil
}

// safeReturnTo returns target when it is a path on this site, and fallback otherwise. It
// refuses everything a browser could read as another origin: //host, /\host, schemes, control
// characters, backslashes, and encodings of those.
func safeReturnTo(target, fallback string) string {
	if len(target) == 0 || len(target) > 2048 || target[0] != '/' {
		return fallback
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fallback
		}
	}
	if strings.HasPrefix(target, "//") {
		return fallback
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return fallback
	}
	// A path that decodes to //host or /\host is refused too: some servers and browsers decode
	// before they resolve.
	if dec, err := url.PathUnescape(u.EscapedPath()); err != nil || strings.HasPrefix(dec, "//") ||
		strings.HasPrefix(dec, "/\\") || strings.ContainsAny(dec, "\\\r\n\t") {
		return fallback
	}
	return target
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
