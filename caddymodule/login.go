package caddymodule

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
	"golang.org/x/oauth2"
)

const (
	// attemptTTL is how long a login attempt may take at the provider.
	attemptTTL = 10 * time.Minute
	// maxAttempts bounds the attempt cookies a browser carries; the oldest is dropped.
	maxAttempts = 4
	// maxParamLen bounds any single callback parameter we look at.
	maxParamLen = 16 << 10
)

// A state the module mints is a MAC token (mactoken.go), so the callback can tell its own
// states from foreign ones even when the attempt's cookie is gone. The attempt cookie is
// named after the token's random part, so parallel tabs never clash.
var stateLen = macTokenLen(0)

type stateInfo struct {
	issued time.Time
	id     string // base64url of the random part: the attempt cookie's suffix
}

func (h *Handler) mintState(now time.Time) (string, stateInfo) {
	state, random := mintMACToken(h.stateKeys[0], now, nil)
	return state, stateInfo{issued: now.Truncate(time.Second), id: base64.RawURLEncoding.EncodeToString(random)}
}

// parseState reports whether state is one the module minted, and what it says.
func (h *Handler) parseState(state string) (stateInfo, bool) {
	issued, random, _, ok := openMACToken(h.stateKeys, state, 0)
	if !ok {
		return stateInfo{}, false
	}
	return stateInfo{issued: issued, id: base64.RawURLEncoding.EncodeToString(random)}, true
}

// attempt is one login in progress, sealed in its own cookie.
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
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	d, err := h.provider.get()
	if err != nil {
		h.writeError(w, r, errUnreachable)
		return
	}
	now := h.now()
	state, info := h.mintState(now)
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
	http.Redirect(w, r, h.oauth2Config(d, r).AuthCodeURL(state, opts...), http.StatusFound)
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
	for len(alive) >= h.stateLimit {
		h.jar.Clear(w, alive[0].name)
		alive = alive[1:]
	}
}

// takeAttempt finds, opens and clears the attempt cookie for state. It reports whether the
// cookie was there at all, so a missing cookie can be told from a bad one.
func (h *Handler) takeAttempt(w http.ResponseWriter, r *http.Request, state string, info stateInfo) (*attempt, bool) {
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

// deriveKey derives a purpose-bound key from a session secret.
func deriveKey(secret, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, purpose, 32)
	if err != nil {
		panic("hkdf with a 32-byte output cannot fail: " + err.Error())
	}
	return k
}
