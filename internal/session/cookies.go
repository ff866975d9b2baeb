package session

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// ChunkSize keeps each cookie, with its name and attributes, under the 4096 bytes browsers accept.
	ChunkSize = 3800
	// MaxChunks bounds how many chunk cookies a value may take (and how many are read back).
	MaxChunks = 8
)

// Jar knows the names and attributes of the module's cookies.
type Jar struct {
	// Base is the session cookie's name, with the __Host- prefix when it applies.
	Base string
	// SameSite is the session cookie's SameSite attribute.
	SameSite http.SameSite
	domain   string
	secure   bool
	now      func() time.Time // the handler's clock, for Max-Age
}

// NewJar returns the jar of a session cookie called name. A host-only Secure cookie takes the
// __Host- prefix instead of leading underscores, so a sibling subdomain cannot plant one.
func NewJar(name, domain string, secure bool, sameSite http.SameSite, now func() time.Time) Jar {
	j := Jar{Base: name, domain: domain, secure: secure, SameSite: sameSite, now: now}
	if j.secure && j.domain == "" {
		j.Base = "__Host-" + strings.TrimLeft(strings.TrimPrefix(name, "__Host-"), "_")
	}
	return j
}

// Domain is the cookies' Domain attribute; empty for host-only cookies.
func (j Jar) Domain() string { return j.domain }

// Secure reports whether the cookies carry the Secure attribute.
func (j Jar) Secure() bool { return j.secure }

// Names of the module's other cookies, all under the session cookie's name so that one prefix
// test finds every cookie of the module.
func (j Jar) AttemptPrefix() string { return j.Base + "_att_" }
func (j Jar) ConfirmName() string   { return j.Base + "_confirm" }
func (j Jar) StashName() string     { return j.Base + "_stash" }

func (j Jar) cookie(name, value string, expires time.Time, sameSite http.SameSite) *http.Cookie {
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
func (j Jar) Set(w http.ResponseWriter, name, value string, expires time.Time, sameSite http.SameSite) {
	http.SetCookie(w, j.cookie(name, value, expires, sameSite))
}

// clear expires the cookie called name.
func (j Jar) Clear(w http.ResponseWriter, name string) {
	c := j.cookie(name, "", time.Time{}, j.SameSite)
	c.MaxAge = -1
	http.SetCookie(w, c)
}

// SetChunked writes value under name, split into name_0, name_1, ... when it is too long for
// one cookie, and clears whichever of those the request still carries and no longer apply.
// A value longer than MaxChunks chunks is not written (it could never be read back): ok is false.
func (j Jar) SetChunked(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) (ok bool) {
	return j.SetChunkedSameSite(w, r, name, value, expires, j.SameSite)
}

// SetChunkedSameSite is SetChunked with a SameSite of its own.
func (j Jar) SetChunkedSameSite(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time, sameSite http.SameSite) bool {
	if len(value) > MaxChunks*ChunkSize {
		return false
	}
	if len(value) <= ChunkSize {
		j.Set(w, name, value, expires, sameSite)
		if HasCookie(r, name) {
			j.clearChunksFrom(w, r, name, 0)
		} else {
			// The request shows no whole cookie: it may have been sent cross-site, hiding chunks
			// of an earlier session that would come back when this one expires.
			j.ClearChunkNames(w, name, 0)
		}
		return true
	}
	n := 0
	for ; len(value) > 0; n++ {
		part := value[:min(ChunkSize, len(value))]
		value = value[len(part):]
		j.Set(w, name+"_"+strconv.Itoa(n), part, expires, sameSite)
	}
	// Clear the whole name and every later chunk whether or not this request carried them: a
	// cross-site request (SameSite) may not show what the browser holds, and a stale whole
	// cookie would be read before these chunks, a stale later chunk after them.
	j.Clear(w, name)
	j.ClearChunkNames(w, name, n)
	return true
}

// ClearAll clears name and every chunk name, whether or not the request carried them: a
// request the browser sent cross-site may not show the cookies it holds (SameSite).
func (j Jar) ClearAll(w http.ResponseWriter, name string) {
	j.Clear(w, name)
	j.ClearChunkNames(w, name, 0)
}

// ClearChunkNames clears chunks from and later of name, unconditionally.
func (j Jar) ClearChunkNames(w http.ResponseWriter, name string, from int) {
	for i := from; i < MaxChunks; i++ {
		j.Clear(w, name+"_"+strconv.Itoa(i))
	}
}

// ClearChunked clears name and every chunk of it the request carries.
func (j Jar) ClearChunked(w http.ResponseWriter, r *http.Request, name string) {
	if HasCookie(r, name) {
		j.Clear(w, name)
	}
	j.clearChunksFrom(w, r, name, 0)
}

func (j Jar) clearChunksFrom(w http.ResponseWriter, r *http.Request, name string, from int) {
	for i := from; i < MaxChunks; i++ {
		chunk := name + "_" + strconv.Itoa(i)
		if !HasCookie(r, chunk) {
			return
		}
		j.Clear(w, chunk)
	}
}

// ReadChunked returns the value stored under name, whole or in chunks; ok is false when
// there is none or the chunks are incomplete.
func ReadChunked(r *http.Request, name string) (string, bool) {
	if v, ok := CookieValue(r, name); ok {
		return v, true
	}
	var chunks [MaxChunks]string
	n, size := 0, 0
	for ; n < MaxChunks; n++ {
		v, ok := CookieValue(r, name+"_"+strconv.Itoa(n))
		if !ok {
			break
		}
		chunks[n] = v
		size += len(v)
	}
	switch n {
	case 0:
		return "", false
	case 1:
		return chunks[0], true
	}
	var b strings.Builder
	b.Grow(size)
	for _, v := range chunks[:n] {
		b.WriteString(v)
	}
	return b.String(), true
}

func HasCookie(r *http.Request, name string) bool {
	_, ok := CookieValue(r, name)
	return ok
}

// CookieValue finds the cookie called name in the request without parsing every cookie into
// a new slice, as r.Cookie does: the authenticated path reads one cookie on every request.
func CookieValue(r *http.Request, name string) (string, bool) {
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

// CookiesWithPrefix lists the names and values of the request's cookies whose names start with prefix.
func CookiesWithPrefix(r *http.Request, prefix string) [][2]string {
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

// WithoutOwnCookies returns the request's Cookie header values with every cookie of the module
// removed: the one called prefix and those called prefix_... (chunks, attempts, confirmation,
// stash). An application's own cookie whose name merely starts with prefix is kept. changed is
// false when there was none to remove; kept is then empty (the values stand as they are).
func WithoutOwnCookies(values []string, prefix string) (kept string, changed bool) {
	// A first pass measures what is kept, so the result takes one allocation, or none when
	// nothing is removed.
	size, parts := 0, 0
	for _, line := range values {
		for rest := line; rest != ""; {
			var p string
			p, rest = nextCookie(rest)
			switch {
			case p == "":
			case isOwnCookie(p, prefix):
				changed = true
			default:
				size += len(p)
				parts++
			}
		}
	}
	if !changed {
		return "", false
	}
	var b strings.Builder
	b.Grow(size + 2*max(parts-1, 0))
	for _, line := range values {
		for rest := line; rest != ""; {
			var p string
			p, rest = nextCookie(rest)
			if p == "" || isOwnCookie(p, prefix) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
	}
	return b.String(), true
}

// nextCookie splits the next name=value pair, trimmed, off a Cookie header line.
func nextCookie(line string) (pair, rest string) {
	pair, rest, _ = strings.Cut(line, ";")
	return strings.TrimSpace(pair), rest
}

// isOwnCookie reports whether the pair is the module's: named prefix, or prefix_... .
func isOwnCookie(pair, prefix string) bool {
	return strings.HasPrefix(pair, prefix) &&
		(len(pair) == len(prefix) || pair[len(prefix)] == '=' || pair[len(prefix)] == '_')
}
