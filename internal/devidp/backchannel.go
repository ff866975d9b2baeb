// OpenID Connect Back-Channel Logout 1.0: the provider remembers which clients each of its
// sessions (sid) logged into, and when a session ends it POSTs a logout token to each of
// those clients' BackchannelLogoutURI, synchronously, recording what happened.

package devidp

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// backchannelTimeout bounds one delivery: a client that does not answer in time is
// recorded as failed.
const backchannelTimeout = 5 * time.Second

// maxDeliveries is how many deliveries BackchannelDeliveries remembers, newest kept.
const maxDeliveries = 1000

// loginRecord is what a provider session (by sid) logged into.
type loginRecord struct {
	UserID  string
	Clients []string // client ids, in order of first login
	expires time.Time
}

// BackchannelDelivery is one logout token POSTed to a client's BackchannelLogoutURI.
type BackchannelDelivery struct {
	ClientID, URI string
	// SID and Sub are the ended session's, as the logout token carries them.
	SID, Sub string
	// LogoutToken is the JWT that was posted.
	LogoutToken string
	// Status is the client's HTTP status (200 or 204 mean accepted); 0 when it did not answer.
	Status int
	// Err is why there was no answer (connection refused, timeout); empty when there was one.
	Err string
	// At is when it was sent, by the provider's clock.
	At time.Time
}

// noteLogin records that g's session (its sid) logged into g's client.
func (s *Server) noteLogin(g grant) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	rec := s.logins[g.SID]
	if rec == nil {
		rec = &loginRecord{UserID: g.UserID}
		s.logins[g.SID] = rec
	}
	if !slices.Contains(rec.Clients, g.ClientID) {
		rec.Clients = append(rec.Clients, g.ClientID)
	}
	rec.expires = now.Add(sessionTTL)
}

// EndSession ends provider sessions as a logout at the provider would, and sends the
// back-channel logout tokens before it returns. who is a session id (the ID token's sid), or
// a user's Key or sub to end every session of that user (browser SSO sessions included). It
// returns how many sessions it ended; the deliveries are in BackchannelDeliveries.
func (s *Server) EndSession(who string) int {
	var sids []string
	s.mu.Lock()
	if _, ok := s.logins[who]; ok {
		sids = append(sids, who)
		for id, sess := range s.sessions {
			if sess.SID == who {
				delete(s.sessions, id)
			}
		}
	} else if u := s.user(who); u != nil {
		for sid, rec := range s.logins {
			if rec.UserID == u.ID {
				sids = append(sids, sid)
			}
		}
		for id, sess := range s.sessions {
			if sess.UserID == u.ID {
				delete(s.sessions, id)
				if !slices.Contains(sids, sess.SID) {
					sids = append(sids, sess.SID)
				}
			}
		}
	}
	s.mu.Unlock()
	slices.Sort(sids)
	s.endLogins(context.Background(), sids)
	return len(sids)
}

// endLogins forgets the sessions sids and delivers their logout tokens, concurrently, each
// within backchannelTimeout; it returns when all are done.
func (s *Server) endLogins(ctx context.Context, sids []string) {
	now := s.now()
	var todo []BackchannelDelivery
	s.mu.Lock()
	for _, sid := range sids {
		rec, ok := s.logins[sid]
		if !ok {
			continue
		}
		delete(s.logins, sid)
		for _, id := range rec.Clients {
			if c := s.client(id); c != nil && c.BackchannelLogoutURI != "" {
				todo = append(todo, BackchannelDelivery{ClientID: id, URI: c.BackchannelLogoutURI, SID: sid, Sub: rec.UserID, At: now})
			}
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := range todo {
		wg.Go(func() { s.deliverLogout(ctx, &todo[i]) })
	}
	wg.Wait()
	if len(todo) == 0 {
		return
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, todo...)
	if n := len(s.deliveries) - maxDeliveries; n > 0 {
		s.deliveries = slices.Delete(s.deliveries, 0, n)
	}
	s.mu.Unlock()
}

// deliverLogout mints d's logout token and POSTs it, filling in the outcome.
func (s *Server) deliverLogout(ctx context.Context, d *BackchannelDelivery) {
	tok, err := s.MintLogoutToken(d.ClientID, d.Sub, d.SID)
	if err != nil {
		d.Err = err.Error()
		return
	}
	d.LogoutToken = tok
	ctx, cancel := context.WithTimeout(ctx, backchannelTimeout)
	defer cancel()
	body := url.Values{"logout_token": {tok}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URI, strings.NewReader(body))
	if err != nil {
		d.Err = err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		d.Err = err.Error()
		return
	}
	resp.Body.Close()
	d.Status = resp.StatusCode
}

// BackchannelDeliveries returns the back-channel logout deliveries made so far, oldest first
// (the last 1000 at most).
func (s *Server) BackchannelDeliveries() []BackchannelDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}
