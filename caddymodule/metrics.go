package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

// The module's metrics, in Caddy's Prometheus registry (served where Caddy serves metrics).
type metrics struct {
	logins           *prometheus.CounterVec   // result: success, failure
	impersonations   *prometheus.CounterVec   // event: started, denied, confirmed, ended; reason
	revoked          *prometheus.CounterVec   // via: admin_api, backchannel
	unsolicited      *prometheus.CounterVec   // outcome: accepted, refused, bounced
	providerDuration *prometheus.HistogramVec // endpoint: discovery, token, userinfo, jwks, other
	storeErrors      *prometheus.CounterVec   // op
}

// newMetrics registers the module's collectors in reg, or takes those a handler of the same
// configuration registered already. A nil registry gives nil metrics, which count nothing.
func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		return nil
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "oidc_auth", Name: name, Help: help}, labels))
	}
	return &metrics{
		logins:         counter("logins_total", "Logins completed and failed.", "result"),
		impersonations: counter("impersonations_total", "Impersonations started, denied, confirmed and ended.", "event", "reason"),
		revoked:        counter("sessions_revoked_total", "Sessions revoked.", "via"),
		unsolicited:    counter("unsolicited_total", "Unsolicited authorization responses, by outcome.", "outcome"),
		providerDuration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "caddy", Subsystem: "oidc_auth", Name: "provider_request_duration_seconds",
			Help: "Calls to the identity provider.", Buckets: prometheus.DefBuckets}, []string{"endpoint"})),
		storeErrors: counter("store_errors_total", "Store operations that failed.", "op"),
	}
}

// register registers c, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// observeEvent counts what an audit event says.
func (m *metrics) observeEvent(name, reason string) {
	if m == nil {
		return
	}
	switch name {
	case evLogin:
		m.logins.WithLabelValues("success").Inc()
	case evLoginFailed:
		m.logins.WithLabelValues("failure").Inc()
	case evImpersonationStarted, evImpersonationDenied, evImpersonationConfirmed, evImpersonationEnded:
		m.impersonations.WithLabelValues(strings.TrimPrefix(name, "impersonation_"), reasonLabel(reason)).Inc()
	case evSessionRevoked:
		if strings.Contains(reason, "back-channel") && !strings.Contains(reason, "refused") {
			m.revoked.WithLabelValues("backchannel").Inc()
		}
	}
}

// reasonLabel keeps a label's values few: a reason without the detail after a colon or a
// parenthesis, and bounded in length.
func reasonLabel(reason string) string {
	if i := strings.IndexAny(reason, ":("); i >= 0 {
		reason = reason[:i]
	}
	reason = strings.TrimSpace(reason)
	if len(reason) > 60 {
		reason = reason[:60]
	}
	return reason
}

func (m *metrics) countUnsolicited(outcome string) {
	if m != nil {
		m.unsolicited.WithLabelValues(outcome).Inc()
	}
}

func (m *metrics) countRevoked(via string, n int) {
	if m != nil {
		m.revoked.WithLabelValues(via).Add(float64(n))
	}
}

// timedTransport observes the duration of every call to the provider, by endpoint.
type timedTransport struct {
	next     http.RoundTripper
	m        *metrics
	endpoint func(*http.Request) string
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if t.m != nil {
		t.m.providerDuration.WithLabelValues(t.endpoint(r)).Observe(time.Since(start).Seconds())
	}
	return resp, err
}

// CloseIdleConnections lets the provider's client close the transport's idle connections.
func (t *timedTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// meteredStore counts the store's failures by operation.
type meteredStore struct {
	store.Store
	m *metrics
}

func (s meteredStore) fail(op string, err error) error {
	if err != nil && s.m != nil {
		s.m.storeErrors.WithLabelValues(op).Inc()
	}
	return err
}

func (s meteredStore) Claim(ctx context.Context, key string, expires time.Time) (bool, error) {
	ok, err := s.Store.Claim(ctx, key, expires)
	return ok, s.fail("claim", err)
}

func (s meteredStore) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	unlock, ok, err := s.Store.TryLock(ctx, key, ttl)
	return unlock, ok, s.fail("lock", err)
}

func (s meteredStore) Register(ctx context.Context, rec store.SessionRecord) error {
	return s.fail("register", s.Store.Register(ctx, rec))
}

func (s meteredStore) Sessions(ctx context.Context, f store.Filter) ([]store.SessionRecord, error) {
	recs, err := s.Store.Sessions(ctx, f)
	return recs, s.fail("sessions", err)
}

func (s meteredStore) Revoke(ctx context.Context, recs []store.SessionRecord) error {
	return s.fail("revoke", s.Store.Revoke(ctx, recs))
}

// unwrapStore is the store a meteredStore counts for, or s itself.
func unwrapStore(s store.Store) store.Store {
	if m, ok := s.(meteredStore); ok {
		return m.Store
	}
	return s
}

func (s meteredStore) PutSession(ctx context.Context, id string, data []byte, expires time.Time) error {
	return s.fail("put_session", s.Store.PutSession(ctx, id, data, expires))
}

func (s meteredStore) GetSession(ctx context.Context, id string) ([]byte, error) {
	b, err := s.Store.GetSession(ctx, id)
	return b, s.fail("get_session", err)
}

func (s meteredStore) DeleteSession(ctx context.Context, id string) error {
	return s.fail("delete_session", s.Store.DeleteSession(ctx, id))
}
