package caddymodule

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// chunkSize keeps each cookie, with its name and attributes, under the 4096 bytes browsers accept.
	chunkSize = 3800
	// maxChunks bounds how many chunk cookies a value may take (and how many are read back).
	maxChunks = 8
)

// cookieJar knows the names and attributes of the module's cookies.
type cookieJar struct {
	base     string // the session cookie name, with the __Host- prefix when it applies
	domain   string
	secure   bool
	sameSite http.SameSite
	now      func() time.Time // the handler's clock, for Max-Age
}

func newCookieJar(c *CookieConfig, now func() time.Time) cookieJar {
	j := cookieJar{base: c.Name, domain: c.Domain, secure: !c.Insecure, now: now}
	switch c.SameSite {
	case "strict":
		j.sameSite = http.SameSiteStrictMode
	case "none":
		j.sameSite = http.SameSiteNoneMode
	default:
		j.sameSite = http.SameSiteLaxMode
	}
	if j.secure && j.domain == "" {
		// A host-only Secure cookie takes the __Host- prefix, so a sibling subdomain cannot plant one.
		j.base = "__Host-" + strings.TrimLeft(strings.TrimPrefix(c.Name, "__Host-"), "_")
	}
	return j
}

// Names of the module's other cookies, all under the session cookie's name so that one prefix
// test finds every cookie of the module.
func (j cookieJar) attemptPrefix() string { return j.base + "_att_" }
func (j cookieJar) confirmName() string   { return j.base + "_confirm" }
func (j cookieJar) stashName() string     { return j.base + "_stash" }

func (j cookieJar) cookie(name, value string, expires time.Time, sameSite http.SameSite) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   j.domain,
		Secure:   j.secure,
		HttpOnly: true,
		SameSite: sameSite,
	}
	if !expires.IsZero() {
		c.Expires = expires.UTC()
		c.MaxAge = int(expires.Sub(j.now()).Seconds())
		if c.MaxAge <= 0 {
			c.MaxAge = 1
		}
	}
	return c
}

// set writes one cookie that is not chunked.
func (j cookieJar) set(w http.ResponseWriter, name, value string, expires time.Time, sameSite http.SameSite) {
	http.SetCookie(w, j.cookie(name, value, expires, sameSite))
}

// clear expires the cookie called name.
func (j cookieJar) clear(w http.ResponseWriter, name string) {
	c := j.cookie(name, "", time.Time{}, j.sameSite)
	c.MaxAge = -1
	http.SetCookie(w, c)
}

// setChunked writes value under name, split into name_0, name_1, ... when it is too long for
// one cookie, and clears whichever of those the request still carries and no longer apply.
// A value longer than maxChunks chunks is not written (it could never be read back): ok is false.
func (j cookieJar) setChunked(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) (ok bool) {
	return j.setChunkedSameSite(w, r, name, value, expires, j.sameSite)
}

// setChunkedSameSite is setChunked with a SameSite of its own.
func (j cookieJar) setChunkedSameSite(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time, sameSite http.SameSite) bool {
	if len(value) > maxChunks*chunkSize {
		return false
	}
	if len(value) <= chunkSize {
		j.set(w, name, value, expires, sameSite)
		if hasCookie(r, name) {
			j.clearChunksFrom(w, r, name, 0)
		} else {
			// The request shows no whole cookie: it may have been sent cross-site, hiding chunks
			// of an earlier session that would come back when this one expires.
			j.clearChunkNames(w, name, 0)
		}
		return true
	}
	n := 0
	for ; len(value) > 0; n++ {
		part := value[:min(chunkSize, len(value))]
		value = value[len(part):]
		j.set(w, name+"_"+strconv.Itoa(n), part, expires, sameSite)
	}
	// Clear the whole name and every later chunk whether or not this request carried them: a
	// cross-site request (SameSite) may not show what the browser holds, and a stale whole
	// cookie would be read before these chunks, a stale later chunk after them.
	j.clear(w, name)
	j.clearChunkNames(w, name, n)
	return true
}

// clearAll clears name and every chunk name, whether or not the request carried them: a
// request the browser sent cross-site may not show the cookies it holds (SameSite).
func (j cookieJar) clearAll(w http.ResponseWriter, name string) {
	j.clear(w, name)
	j.clearChunkNames(w, name, 0)
}

// clearChunkNames clears chunks from and later of name, unconditionally.
func (j cookieJar) clearChunkNames(w http.ResponseWriter, name string, from int) {
	for i := from; i < maxChunks; i++ {
		j.clear(w, name+"_"+strconv.Itoa(i))
	}
}

// clearChunked clears name and every chunk of it the request carries.
func (j cookieJar) clearChunked(w http.ResponseWriter, r *http.Request, name string) {
	if hasCookie(r, name) {
		j.clear(w, name)
	}
	j.clearChunksFrom(w, r, name, 0)
}

func (j cookieJar) clearChunksFrom(w http.ResponseWriter, r *http.Request, name string, from int) {
	for i := from; i < maxChunks; i++ {
		chunk := name + "_" + strconv.Itoa(i)
		if !hasCookie(r, chunk) {
			return
		}
		j.clear(w, chunk)
	}
}

// readChunked returns the value stored under name, whole or in chunks; ok is false when
// there is none or the chunks are incomplete.
func readChunked(r *http.Request, name string) (string, bool) {
	if v, ok := cookieValue(r, name); ok {
		return v, true
	}
	var b strings.Builder
	for i := 0; i < maxChunks; i++ {
		v, ok := cookieValue(r, name+"_"+strconv.Itoa(i))
		if !ok {
			break
		}
		b.WriteString(v)
	}
	return b.String(), b.Len() > 0
}

func hasCookie(r *http.Request, name string) bool {
	_, ok := cookieValue(r, name)
	return ok
}

// cookieValue finds the cookie called name in the request without parsing every cookie into
// a new slice, as r.Cookie does: the authenticated path reads one cookie on every request.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			part, rest, _ := strings.Cut(line, ";")
			line = rest
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// cookiesWithPrefix lists the names and values of the request's cookies whose names start with prefix.
func cookiesWithPrefix(r *http.Request, prefix string) [][2]string {
	var out [][2]string
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.HasPrefix(k, prefix) {
				out = append(out, [2]string{k, v})
			}
		}
	}
	return out
}

// withoutOwnCookies returns the request's Cookie header values with every cookie of the module
// removed: the one called prefix and those called prefix_... (chunks, attempts, confirmation,
// stash). An application's own cookie whose name merely starts with prefix is kept. changed is
// false when there was none to remove.
func withoutOwnCookies(values []string, prefix string) (kept string, changed bool) {
	var b strings.Builder
	for _, line := range values {
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if strings.HasPrefix(name, prefix) && (len(name) == len(prefix) || name[len(prefix)] == '_') {
				changed = true
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
	}
	return b.String(), changed
}
