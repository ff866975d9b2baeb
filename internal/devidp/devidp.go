// Package devidp is a small OpenID Connect provider for development, tests and the demo.
//
// It simulates Auth0 where the protocol is Auth0's — discovery, RS256 JWKS, /authorize,
// /oauth/token, /userinfo, /v2/logout, and "Sign in as User" impersonation with its one-time
// bewit links — and can show the impersonator the way Keycloak or RFC 8693 do instead.
// Everything is held in memory; time comes from Config.Now so tests never sleep.
package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says how an impersonated login shows the impersonator in tokens and /userinfo.
type Mode string

const (
	// ModeAuth0 is the default and Auth0's way: /userinfo carries `impersonated: true` and
	// `impersonator: {user_id, email}`; the ID token carries nothing unless Config.Namespace is
	// set (an Action adding namespaced claims).
	ModeAuth0 Mode = "auth0"
	// ModeKeycloak puts `impersonator: {id, username}` in the ID token, JWT access tokens and
	// /userinfo, as Keycloak's impersonator mappers do.
	ModeKeycloak Mode = "keycloak"
	// ModeAct puts the RFC 8693 actor claim `act: {sub: <impersonator id>}` in the ID token,
	// JWT access tokens and /userinfo.
	ModeAct Mode = "act"
)

// Client is an application registered at the provider.
type Client struct {
	// ID and Secret are the client credentials, accepted as client_secret_basic or
	// client_secret_post. An empty Secret and no PublicKeys make a public client that
	// authenticates with its client_id alone (use PKCE).
	ID, Secret string
	// PublicKeys let the client authenticate with private_key_jwt (RFC 7523): a client
	// assertion signed RS256 by an *rsa.PublicKey's key or ES256 by a P-256
	// *ecdsa.PublicKey's. With an empty Secret, private_key_jwt is its only method.
	PublicKeys []crypto.PublicKey
	// RedirectURIs are the allowed callback URLs, compared exactly. The first one is the
	// callback of an impersonation request that names none, as in the Auth0 Dashboard.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the allowed returnTo / post_logout_redirect_uri values,
	// compared exactly.
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives a logout token (OpenID Connect Back-Channel Logout 1.0)
	// when a provider session that logged into this client ends. Empty: none is sent.
	BackchannelLogoutURI string
}

// Config configures a Server. Only Issuer is required.
type Config struct {
	// Issuer is the provider's base URL with a trailing slash, as Auth0's:
	// "http://127.0.0.1:PORT/". Every endpoint lives under it. Required.
	Issuer string
	// Clients are the registered applications.
	Clients []Client
	// Users are the accounts that can sign in. Nil means DemoUsers().
	Users []User
	// AdminToken is the Bearer token accepted by POST /users/{id}/impersonate (Auth0's
	// Global Client token). Empty disables that API (403).
	AdminToken string
	// Mode says how impersonation appears in tokens and /userinfo. Default: ModeAuth0.
	Mode Mode
	// Namespace, e.g. "https://example.com/", makes impersonated ID tokens carry
	// Namespace+"impersonated": true and Namespace+"impersonator": {user_id, email}, as an
	// Auth0 Action adding namespaced claims would. Empty: no such claims.
	Namespace string
	// AccessTokenTTL is the lifetime of access tokens. Default: 24h (Auth0's expires_in 86400).
	AccessTokenTTL time.Duration
	// DisableEndSession omits end_session_endpoint from discovery, like an Auth0 tenant
	// without RP-initiated logout. /oidc/logout and /v2/logout keep working.
	DisableEndSession bool
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Key signs tokens (RS256). Nil means a fresh 2048-bit key.
	Key *rsa.PrivateKey
	// HTTPClient sends back-channel logout tokens. Nil means a client with a 5s timeout;
	// each delivery is bounded to 5s in any case.
	HTTPClient *http.Client
	// Misbehave lists the deliberate protocol violations the provider starts with, for
	// testing a relying party's checks (see Misbehaviour). SetMisbehaviour changes them at
	// run time. Default: none, a well-behaved provider.
	Misbehave []Misbehaviour
}

// Lifetimes of the provider's own records. ID tokens last 10h, as Auth0's do by default.
const (
	idTokenTTL = 10 * time.Hour
	codeTTL    = 10 * time.Minute
	pendingTTL = 10 * time.Minute
	linkTTL    = 10 * time.Minute
	sessionTTL = 7 * 24 * time.Hour
	refreshTTL = 30 * 24 * time.Hour
	ssoCookie  = "devidp_sso"
	maxBody    = 64 << 10
)

// Server is the development identity provider, an http.Handler. Create it with New.
type Server struct {
	cfg       Config
	base      string // the Issuer's path, "/" usually; every route hangs under it
	secure    bool   // the Issuer is https, so cookies are Secure
	macKey    []byte // HMAC key of impersonation links
	users     []*User
	clients   []*Client
	updatedAt string // the users' updated_at, as Auth0 formats it
	mux       *http.ServeMux
	clock     atomic.Pointer[func() time.Time]
	misbehave atomic.Pointer[misbehaviourSet]
	hanging   func(*http.Request) // test hook: a slow fault has started to hang

	keyMu sync.RWMutex      // guards keys
	keys  []signingKeyEntry // oldest first; the last one signs

	mu         sync.Mutex // guards everything below
	autoUser   string
	autoImp    string
	pending    map[string]*pending
	sessions   map[string]*session
	codes      map[string]*codeEntry
	access     map[string]*accessEntry
	refresh    map[string]*refreshEntry
	usedLinks  map[string]time.Time    // link id → when it would have expired
	usedJTIs   map[string]time.Time    // client id + jti of accepted client assertions → their exp
	logins     map[string]*loginRecord // sid → the clients its session logged into
	deliveries []BackchannelDelivery   // back-channel logout deliveries, oldest first
	lastSweep  time.Time
}

// New checks cfg, fills its defaults and returns a ready Server.
func New(cfg Config) (*Server, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("devidp: Issuer %q must be an absolute http(s) URL", cfg.Issuer)
	}
	if !strings.HasSuffix(u.Path, "/") {
		return nil, fmt.Errorf("devidp: Issuer %q must end with a slash, as Auth0's issuers do", cfg.Issuer)
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeAuth0
	case ModeAuth0, ModeKeycloak, ModeAct:
	default:
		return nil, fmt.Errorf("devidp: unknown Mode %q (want auth0, keycloak or act)", cfg.Mode)
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 24 * time.Hour
	}
	if cfg.Users == nil {
		cfg.Users = DemoUsers()
	}
	s := &Server{
		cfg:       cfg,
		base:      u.Path,
		secure:    u.Scheme == "https",
		pending:   map[string]*pending{},
		sessions:  map[string]*session{},
		codes:     map[string]*codeEntry{},
		access:    map[string]*accessEntry{},
		refresh:   map[string]*refreshEntry{},
		usedLinks: map[string]time.Time{},
		logins:    map[string]*loginRecord{},
		usedJTIs:  map[string]time.Time{},
	}
	if s.cfg.HTTPClient == nil {
		s.cfg.HTTPClient = &http.Client{Timeout: backchannelTimeout}
	}
	s.SetNow(cfg.Now)
	if err := s.SetMisbehaviour(cfg.Misbehave...); err != nil {
		return nil, err
	}
	if err := s.loadUsers(cfg.Users); err != nil {
		return nil, err
	}
	for i := range cfg.Clients {
		c := cfg.Clients[i]
		if c.ID == "" {
			return nil, fmt.Errorf("devidp: client %d has no ID", i)
		}
		if s.client(c.ID) != nil {
			return nil, fmt.Errorf("devidp: client ID %q is used twice", c.ID)
		}
		c.RedirectURIs = slices.Clone(c.RedirectURIs)
		c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
		c.PublicKeys = slices.Clone(c.PublicKeys)
		if err := checkPublicKeys(&c); err != nil {
			return nil, err
		}
		s.clients = append(s.clients, &c)
	}
	key := cfg.Key
	if key == nil {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("devidp: generating signing key: %w", err)
		}
	}
	s.keys = []signingKeyEntry{{kid: keyID(&key.PublicKey), key: key}}
	s.macKey = make([]byte, 32)
	rand.Read(s.macKey)
	s.updatedAt = s.now().UTC().Format("2006-01-02T15:04:05.000Z")
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	p := s.base
	m.HandleFunc("GET "+p+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, p+"admin", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+p+".well-known/openid-configuration", s.faulty(endpointDiscovery, s.handleDiscovery))
	m.HandleFunc("GET "+p+".well-known/jwks.json", s.faulty(endpointJWKS, s.handleJWKS))
	m.HandleFunc("GET "+p+"authorize", s.handleAuthorize)
	m.HandleFunc("POST "+p+"login", s.handleLogin)
	m.HandleFunc("POST "+p+"oauth/token", s.faulty(endpointToken, s.handleToken))
	m.HandleFunc("GET "+p+"userinfo", s.faulty(endpointUserinfo, s.handleUserinfo))
	m.HandleFunc("POST "+p+"userinfo", s.faulty(endpointUserinfo, s.handleUserinfo))
	m.HandleFunc("POST "+p+"users/{id}/impersonate", s.handleImpersonateAPI)
	m.HandleFunc("GET "+p+"users/{id}/impersonate", s.handleFollowLink)
	m.HandleFunc("GET "+p+"oidc/logout", s.handleOIDCLogout)
	m.HandleFunc("POST "+p+"oidc/logout", s.handleOIDCLogout)
	m.HandleFunc("GET "+p+"v2/logout", s.handleV2Logout)
	m.HandleFunc("GET "+p+"admin", s.handleAdmin)
	m.HandleFunc("POST "+p+"admin/impersonate", s.handleAdminImpersonate)
	m.HandleFunc("POST "+p+"admin/kc-impersonate", s.handleKCImpersonate)
	m.HandleFunc("POST "+p+"admin/kc-stop", s.handleKCStop)
	s.mux = m
}

// ServeHTTP serves every endpoint of the provider under the Issuer's path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// SetAutoLogin makes /authorize complete at once as the user with this Key (or ID), without
// showing the login page: the non-interactive way for tests. It sets no SSO cookie, and a
// browser's live SSO session (from the login or admin page) still comes first, as in Auth0,
// unless the request says prompt=login. A non-empty impersonatorKey simulates a
// Keycloak-style impersonated SSO session: the login is solicited, but the tokens carry the
// impersonator as the Mode says. SetAutoLogin("", "") turns it off. Safe for concurrent use.
func (s *Server) SetAutoLogin(userKey, impersonatorKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.autoUser, s.autoImp = userKey, impersonatorKey
}

// SetNow replaces the clock (nil means time.Now), so tests move time instead of sleeping.
func (s *Server) SetNow(f func() time.Time) {
	if f == nil {
		f = time.Now
	}
	s.clock.Store(&f)
}

func (s *Server) now() time.Time { return (*s.clock.Load())() }

func (s *Server) issuer() string { return s.cfg.Issuer }

func (s *Server) client(id string) *Client {
	for _, c := range s.clients {
		if c.ID == id {
			return c
		}
	}
	return nil
}
