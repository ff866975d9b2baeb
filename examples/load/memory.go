package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// The memory phase: many distinct sessions, each sent once, and the Caddy's peak RSS before
// and after. The sessions are minted rather than signed in (10,000 sign-ins would take long):
// the session of the system's real sign-in is opened with the module's sealer and codec
// (internal/session; the script knows the secret) and copies are sealed with new IDs and
// subjects, for the same provider key. The module cannot tell them from sessions it issued.

// sessionGrace is the module's: a session cookie is sealed to outlive its session by this.
const sessionGrace = 10 * time.Minute

func memoryPhase(w io.Writer, o options, l *lab) error {
	sealer, err := session.NewSealer([]string{sessionSecret})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d distinct sessions, each sent once (%d connections); peak RSS of the Caddy (VmHWM):\n\n", o.sessions, o.conns)
	fmt.Fprintf(w, "| %-38s | %12s | %12s | %12s | %6s |\n", "system", "before", "after", "RSS after", "errors")
	fmt.Fprintf(w, "| %s | %s:| %s:| %s:| %s:|\n", strings.Repeat("-", 38), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 6))
	var notes []string
	for _, name := range o.mem {
		s := l.byName[name]
		if s == nil {
			continue
		}
		var m minter
		var err error
		if name == "b-redis" {
			m, err = newRedisMinter(sealer, s, l.redisURL)
		} else {
			m, err = newCookieMinter(sealer, s)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.desc, err)
		}
		headers := make([]string, o.sessions)
		for i := range headers {
			c, err := m.mint(i)
			if err != nil {
				return fmt.Errorf("%s: minting: %w", s.desc, err)
			}
			headers[i] = strings.Replace(s.cookieHeader(), s.cookie, c, 1)
		}
		if err := m.flush(); err != nil {
			return fmt.Errorf("%s: %w", s.desc, err)
		}
		before, _ := s.proc.peakRSS()
		errs, first := sendEach(s, headers, o.conns)
		after, rss := s.proc.peakRSS()
		fmt.Fprintf(w, "| %-38s | %9.1f MB | %9.1f MB | %9.1f MB | %6d |\n", s.desc, mb(before), mb(after), mb(rss), errs)
		if first != "" {
			notes = append(notes, fmt.Sprintf("%s: first failure: %s", s.desc, first))
		}
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

// minter makes distinct sessions like the one a real sign-in gave.
type minter interface {
	mint(i int) (cookie string, err error)
	flush() error
}

// template opens the session a system's real sign-in gave.
func template(sealer *session.Sealer, sealed string) (*session.Session, error) {
	plain, err := sealer.Open(session.PurposeSession, sealed, time.Now())
	if err != nil {
		return nil, fmt.Errorf("opening the signed-in session: %w", err)
	}
	t := new(session.Session)
	if err := t.Unmarshal(plain); err != nil {
		return nil, fmt.Errorf("decoding the signed-in session: %w", err)
	}
	return t, nil
}

// cookieValue is the module's cookie in a Cookie header's part, whole or from its chunks.
func cookieValue(header string) (string, bool) {
	r := &http.Request{Header: http.Header{"Cookie": {header}}}
	return session.ReadChunked(r, moduleCookie)
}

// variant is the template with a new ID and subject, sealed as the module seals.
func variant(sealer *session.Sealer, t *session.Session, i int) (id, sealed string, until time.Time) {
	s := *t
	s.ID = randomID()
	s.Subject = t.Subject + "-" + strconv.Itoa(i)
	s.Created, s.LastSeen = time.Now(), time.Now()
	until = s.Expires.Add(sessionGrace)
	return s.ID, sealer.Seal(session.PurposeSession, s.Marshal(), until), until
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// cookieMinter makes cookie sessions: the sealed session is the cookie, chunked as the
// module chunks it (session.ChunkSize).
type cookieMinter struct {
	sealer *session.Sealer
	t      *session.Session
}

func newCookieMinter(sealer *session.Sealer, s *system) (*cookieMinter, error) {
	v, ok := cookieValue(s.cookie)
	if !ok {
		return nil, fmt.Errorf("no session cookie from the sign-in")
	}
	t, err := template(sealer, v)
	if err != nil {
		return nil, err
	}
	return &cookieMinter{sealer, t}, nil
}

func (m *cookieMinter) mint(i int) (string, error) {
	_, sealed, _ := variant(m.sealer, m.t, i)
	if len(sealed) <= session.ChunkSize {
		return moduleCookie + "=" + sealed, nil
	}
	var parts []string
	for n := 0; sealed != ""; n++ {
		part := sealed[:min(session.ChunkSize, len(sealed))]
		sealed = sealed[len(part):]
		parts = append(parts, moduleCookie+"_"+strconv.Itoa(n)+"="+part)
	}
	return strings.Join(parts, "; "), nil
}

func (m *cookieMinter) flush() error { return nil }

// redisMinter makes server-side sessions: the sealed session goes into Redis under the key the
// module reads (its prefix taken from the real sign-in's key), and the cookie is the sealed
// ticket naming it.
type redisMinter struct {
	sealer *session.Sealer
	t      *session.Session
	c      *redis.Client
	prefix string
	pipe   redis.Pipeliner
}

func newRedisMinter(sealer *session.Sealer, s *system, redisURL string) (*redisMinter, error) {
	ticket, ok := cookieValue(s.cookie)
	if !ok {
		return nil, fmt.Errorf("no ticket cookie from the sign-in")
	}
	id, err := sealer.Open(session.PurposeTicket, ticket, time.Now())
	if err != nil {
		return nil, fmt.Errorf("opening the ticket: %w", err)
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(opt)
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*data:"+string(id)).Result()
	if err != nil || len(keys) != 1 {
		c.Close()
		return nil, fmt.Errorf("the signed-in session is not in Redis (keys %v, %v)", keys, err)
	}
	sealed, err := c.Get(ctx, keys[0]).Result()
	if err != nil {
		c.Close()
		return nil, err
	}
	t, err := template(sealer, sealed)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &redisMinter{sealer: sealer, t: t, c: c, prefix: strings.TrimSuffix(keys[0], "data:"+string(id)), pipe: c.Pipeline()}, nil
}

func (m *redisMinter) mint(i int) (string, error) {
	id, sealed, until := variant(m.sealer, m.t, i)
	m.pipe.SetArgs(context.Background(), m.prefix+"data:"+id, sealed, redis.SetArgs{ExpireAt: until})
	if m.pipe.Len() >= 1000 {
		if err := m.flush(); err != nil {
			return "", err
		}
	}
	return moduleCookie + "=" + m.sealer.Seal(session.PurposeTicket, []byte(id), until), nil
}

func (m *redisMinter) flush() error {
	if m.pipe.Len() == 0 {
		return nil
	}
	_, err := m.pipe.Exec(context.Background())
	return err
}

// sendEach sends one request per Cookie header, conns at a time, and counts the answers that
// are not the upstream's.
func sendEach(s *system, headers []string, conns int) (errs int64, first string) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var (
		next, bad atomic.Int64
		once      sync.Once
		wg        sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(headers) {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, s.url, nil)
				req.Header.Set("Cookie", headers[i])
				resp, err := c.Do(req)
				if err != nil {
					bad.Add(1)
					once.Do(func() { first = err.Error() })
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != answer {
					bad.Add(1)
					once.Do(func() { first = fmt.Sprintf("%d %.100q", resp.StatusCode, body) })
				}
			}
		})
	}
	wg.Wait()
	return bad.Load(), first
}
