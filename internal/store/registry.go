package store

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"
)

// SessionRecord is what the registry knows of a session: who, since and until when, its
// provider session, and any impersonator. Never a token.
type SessionRecord struct {
	ID           string    `json:"id"`
	Subject      string    `json:"sub"`
	SID          string    `json:"sid,omitempty"` // the provider's session (ID token sid)
	Impersonated bool      `json:"impersonated"`
	Impersonator string    `json:"impersonator,omitempty"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
}

// Filter selects sessions; empty fields select everything.
type Filter struct {
	Subject, Impersonator, SID string
	ImpersonatedOnly           bool
}

// Match reports whether f selects rec.
func (f Filter) Match(rec SessionRecord) bool {
	return (f.Subject == "" || rec.Subject == f.Subject) &&
		(f.Impersonator == "" || rec.Impersonator == f.Impersonator) &&
		(f.SID == "" || rec.SID == f.SID) &&
		(!f.ImpersonatedOnly || rec.Impersonated)
}

// maxRecords bounds the in-process registry; when full, expired records go first, then new
// sessions are not recorded (they still work, and cannot be listed or revoked by filter).
const maxRecords = 200_000

// ErrRegistryFull: the registry holds as many live sessions as it may.
var ErrRegistryFull = errors.New("session registry is full")

// Revocations is the in-memory set of revoked sessions every store keeps, so that the
// authenticated path asks without any I/O. Each revocation is kept until the session would
// have expired.
type Revocations struct {
	mu  sync.RWMutex
	ids map[string]time.Time
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations { return &Revocations{ids: map[string]time.Time{}} }

// Add records revocations, and forgets those whose sessions have ended by now.
func (v *Revocations) Add(recs []SessionRecord, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, until := range v.ids {
		if !now.Before(until) {
			delete(v.ids, id)
		}
	}
	for _, rec := range recs {
		v.ids[rec.ID] = rec.Expires
	}
}

// Has reports whether the session was revoked.
func (v *Revocations) Has(id string) bool {
	v.mu.RLock()
	_, ok := v.ids[id]
	v.mu.RUnlock()
	return ok
}

// registry is the in-process session registry, and the data of server-side sessions.
type registry struct {
	mu      sync.RWMutex
	records map[string]SessionRecord
	revoked *Revocations
	data    map[string]sessionData
}

type sessionData struct {
	b       []byte
	expires time.Time
}

func newRegistry() registry {
	return registry{records: map[string]SessionRecord{}, revoked: NewRevocations(), data: map[string]sessionData{}}
}

// PutSession implements Store.
func (s *Memory) PutSession(_ context.Context, id string, data []byte, expires time.Time) error {
	r, now := &s.reg, s.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.data[id]; !ok && len(r.data) >= maxRecords {
		for k, d := range r.data {
			if !now.Before(d.expires) {
				delete(r.data, k)
			}
		}
		if len(r.data) >= maxRecords {
			return ErrRegistryFull
		}
	}
	r.data[id] = sessionData{b: append([]byte(nil), data...), expires: expires}
	return nil
}

// GetSession implements Store.
func (s *Memory) GetSession(_ context.Context, id string) ([]byte, error) {
	s.reg.mu.RLock()
	d, ok := s.reg.data[id]
	s.reg.mu.RUnlock()
	if !ok || !s.now().Before(d.expires) {
		return nil, nil
	}
	return d.b, nil
}

// DeleteSession implements Store.
func (s *Memory) DeleteSession(_ context.Context, id string) error {
	s.reg.mu.Lock()
	delete(s.reg.data, id)
	s.reg.mu.Unlock()
	return nil
}

func (r *registry) register(rec SessionRecord, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.records) >= maxRecords {
		for id, old := range r.records {
			if !now.Before(old.Expires) {
				delete(r.records, id)
			}
		}
		if len(r.records) >= maxRecords {
			return ErrRegistryFull
		}
	}
	r.records[rec.ID] = rec
	return nil
}

func (r *registry) sessions(f Filter, now time.Time) []SessionRecord {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []SessionRecord
	for _, rec := range r.records {
		if now.Before(rec.Expires) && !r.revoked.Has(rec.ID) && f.Match(rec) {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Register implements Store.
func (s *Memory) Register(_ context.Context, rec SessionRecord) error {
	return s.reg.register(rec, s.now())
}

// Sessions implements Store.
func (s *Memory) Sessions(_ context.Context, f Filter) ([]SessionRecord, error) {
	return s.reg.sessions(f, s.now()), nil
}

// Revoke implements Store: this process is everywhere the in-process store reaches.
func (s *Memory) Revoke(_ context.Context, recs []SessionRecord) error {
	s.reg.revoked.Add(recs, s.now())
	return nil
}

// Revoked implements Store.
func (s *Memory) Revoked(id string) bool { return s.reg.revoked.Has(id) }
