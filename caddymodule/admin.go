package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the session registry on Caddy's admin endpoint:
//
//	GET    /oidc_auth/sessions                 ?sub= ?impersonator= ?impersonated=true
//	DELETE /oidc_auth/sessions/{id}
//	DELETE /oidc_auth/sessions?sub=...  or  ?impersonator=...
//	POST   /oidc_auth/assertion/rotate
//
// It reaches every store this process has open: the in-process ones, and through Redis every
// instance sharing it; a rotation, the assertion keys of every storage this process signs with.
type AdminAPI struct {
	audit *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oidc_auth",
		New: func() caddy.Module { return &AdminAPI{audit: caddy.Log().Named("http.handlers.oidc_auth.audit")} },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oidc_auth/sessions", Handler: caddy.AdminHandlerFunc(a.serveSessions)},
		{Pattern: "/oidc_auth/sessions/", Handler: caddy.AdminHandlerFunc(a.serveSessions)},
		{Pattern: "/oidc_auth/assertion/rotate", Handler: caddy.AdminHandlerFunc(a.serveRotate)},
	}
}

func (a *AdminAPI) serveSessions(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/oidc_auth/sessions"), "/")
	q := r.URL.Query()
	f := store.Filter{Subject: q.Get("sub"), Impersonator: q.Get("impersonator"), ImpersonatedOnly: q.Get("impersonated") == "true"}
	switch {
	case r.Method == http.MethodGet && id == "":
		recs, err := allSessions(r, f)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"sessions": nonNilRecords(recs)})
	case r.Method == http.MethodDelete:
		if id == "" && f.Subject == "" && f.Impersonator == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest,
				Err: fmt.Errorf("name a session (/oidc_auth/sessions/ID), a subject (?sub=) or an impersonator (?impersonator=)")}
		}
		n, err := a.revoke(r, id, f)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
		}
		if id != "" && n == 0 {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no live session %q", id)}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]int{"revoked": n})
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
}

// serveRotate makes a new assertion signing key: published at once, signing
// assertion.PublishAhead later (when every instance and cached JWKS has it); the old one stays
// published until what it signed has expired.
func (a *AdminAPI) serveRotate(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	keys, err := rotateAllAssertionKeys(r.Context())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	kids := make([]string, len(keys))
	var from time.Time
	for i, k := range keys {
		kids[i] = k.ID
		if k.Active.After(from) {
			from = k.Active
		}
	}
	if len(kids) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no handler signs identity assertions")}
	}
	if ce := a.audit.Check(zapcore.InfoLevel, evAssertionKeyRotated); ce != nil {
		ce.Write(zap.String("event", evAssertionKeyRotated), zap.Strings("kid", kids),
			zap.String("via", "admin_api"), zap.String("client_ip", r.RemoteAddr))
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"kids": kids,
		"signing_from": from.UTC().Format(time.RFC3339)})
}

// revoke ends the sessions named by id, or selected by f, in every open store.
func (a *AdminAPI) revoke(r *http.Request, id string, f store.Filter) (int, error) {
	n := 0
	err := eachStore(func(s store.Store) error {
		recs, err := s.Sessions(r.Context(), f)
		if err != nil {
			return err
		}
		if id != "" {
			var one []store.SessionRecord
			for _, rec := range recs {
				if rec.ID == id {
					one = append(one, rec)
				}
			}
			recs = one
		}
		if err := s.Revoke(r.Context(), recs); err != nil {
			return err
		}
		active := caddy.ActiveContext()
		newMetrics(active.GetMetricsRegistry()).countRevoked("admin_api", len(recs))
		for _, rec := range recs {
			n++
			if ce := a.audit.Check(zapcore.InfoLevel, evSessionRevoked); ce != nil {
				ce.Write(zap.String("event", evSessionRevoked), zap.String("session_id", rec.ID),
					zap.String("subject", rec.Subject), zap.String("impersonator", rec.Impersonator),
					zap.String("via", "admin_api"), zap.String("client_ip", r.RemoteAddr))
			}
		}
		return nil
	})
	return n, err
}

// allSessions lists what f selects in every open store.
func allSessions(r *http.Request, f store.Filter) ([]store.SessionRecord, error) {
	var all []store.SessionRecord
	err := eachStore(func(s store.Store) error {
		recs, err := s.Sessions(r.Context(), f)
		all = append(all, recs...)
		return err
	})
	return all, err
}

// eachStore calls fn with every store this process has open.
func eachStore(fn func(store.Store) error) error {
	var err error
	visit := func(_, v any) bool {
		var s store.Store
		switch x := v.(type) {
		case pooledStore:
			s = x.Memory
		case *redisStore:
			s = x
		default:
			return true
		}
		err = fn(s)
		return err == nil
	}
	stores.Range(visit)
	if err == nil {
		redisSites.Range(visit)
	}
	return err
}

func nonNilRecords(recs []store.SessionRecord) []store.SessionRecord {
	if recs == nil {
		return []store.SessionRecord{}
	}
	return recs
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
