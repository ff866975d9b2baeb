package caddymodule

import (
	"context"
	"errors"
	"net/http"
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

// newTicketCache keeps sealed sessions read from the store, by session ID, for
// ticketCacheTTL.
func newTicketCache() *expiringCache[string] {
	return newExpiringCache[string](maxTicketCache / 16)
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
	h.tickets.put(id, string(b), now.Add(ticketCacheTTL), now)
	return string(b), ""
}

// writeServerSide keeps the sealed session in the store and sets its ticket as the cookie.
func (h *Handler) writeServerSide(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	sealed, until := h.sealSession(session.PurposeSession, s)
	if err := h.store.PutSession(r.Context(), s.ID, []byte(sealed), until); err != nil {
		return err
	}
	now := h.now()
	h.tickets.put(s.ID, sealed, now.Add(ticketCacheTTL), now)
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
