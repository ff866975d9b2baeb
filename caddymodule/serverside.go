package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// Server-side sessions: the cookie carries a sealed ticket naming the session, and the session
// (sealed as a cookie would be) lives in the store — so its size does not depend on its
// tokens. A bounded local cache keeps the authenticated path free of a round trip for the
// sessions this instance saw recently; a revocation is checked in memory either way.

const (
	// ticketCacheTTL bounds how long this instance trusts a cached session before reading
	// the store again (another instance may have renewed it).
	ticketCacheTTL = 30 * time.Second
	maxTicketCache = 10_000
)

var (
	errTooLarge = errors.New("session too large for cookies")
)

type ticketCache struct {
	mu sync.Mutex
	m  map[string]cachedSession
}

type cachedSession struct {
	sealed string
	at     time.Time
}

func newTicketCache() *ticketCache { return &ticketCache{m: map[string]cachedSession{}} }

func (c *ticketCache) get(id string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.Sub(e.at) > ticketCacheTTL {
		return "", false
	}
	return e.sealed, true
}

func (c *ticketCache) put(id, sealed string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= maxTicketCache {
		for k, e := range c.m {
			if now.Sub(e.at) > ticketCacheTTL || len(c.m) >= maxTicketCache {
				delete(c.m, k)
			}
		}
	}
	c.m[id] = cachedSession{sealed: sealed, at: now}
}

func (c *ticketCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// fromTicket returns the sealed session a ticket names, from the cache or the store; why is
// set when it cannot.
func (h *Handler) fromTicket(ctx context.Context, ticket string, now time.Time) (sealed, why string) {
	plain, err := h.sealer.Open(session.PurposeTicket, ticket, now)
	if err != nil {
		if errors.Is(err, session.ErrExpired) {
			return "", "expired"
		}
		return "", "does not open"
	}
	id := string(plain)
	if v, ok := h.tickets.get(id, now); ok {
		return v, ""
	}
	b, err := h.store.GetSession(ctx, id)
	switch {
	case err != nil:
		return "", "store unavailable"
	case b == nil:
		return "", "server-side session gone"
	}
	h.tickets.put(id, string(b), now)
	return string(b), ""
}

// writeServerSide keeps the sealed session in the store and sets its ticket as the cookie.
func (h *Handler) writeServerSide(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	sealed, until := h.sealSession(session.PurposeSession, s)
	if err := h.store.PutSession(r.Context(), s.ID, []byte(sealed), until); err != nil {
		return err
	}
	h.tickets.put(s.ID, sealed, h.now())
	if !h.jar.SetChunked(w, r, h.jar.Base, h.sealer.Seal(session.PurposeTicket, []byte(s.ID), until), until) {
		return errTooLarge
	}
	return nil
}

// forgetServerSide removes a signed-out session from the store and the cache.
func (h *Handler) forgetServerSide(ctx context.Context, id string) {
	h.tickets.drop(id)
	_ = h.store.DeleteSession(ctx, id)
}
