package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/session"
)

// validate checks what Provision filled in; it names the option, never a secret's value.
func (h *Handler) validate() error {
	if h.Issuer == "" {
		return errors.New("oidc_auth: issuer is required")
	}
	if u, err := url.Parse(h.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("oidc_auth issuer %q: not an http(s) URL", h.Issuer)
	}
	if h.ClientID == "" {
		return errors.New("oidc_auth: client_id is required")
	}
	if len(h.SessionSecrets) == 0 {
		return errors.New("oidc_auth: session_secret is required")
	}
	for i, s := range h.SessionSecrets {
		if len(s) < session.MinSecretLen {
			return fmt.Errorf("oidc_auth session_secret #%d: %d bytes, at least %d are required", i+1, len(s), session.MinSecretLen)
		}
	}
	if err := validateRedirectURI(h.RedirectURI); err != nil {
		return err
	}
	switch ss, ok := sameSites[h.Cookie.SameSite]; {
	case !ok:
		return fmt.Errorf("oidc_auth cookie same_site %q: want lax, strict or none", h.Cookie.SameSite)
	case ss == http.SameSiteNoneMode && h.Cookie.Insecure:
		return errors.New("oidc_auth cookie: same_site none needs Secure cookies; remove insecure")
	}
	if h.Cookie.Name != strings.Map(cookieNameRune, h.Cookie.Name) {
		return fmt.Errorf("oidc_auth cookie name %q: use letters, digits, '_' and '-' only", h.Cookie.Name)
	}
	if err := h.validateClientAuth(); err != nil {
		return err
	}
	var ok bool
	if h.unauthMode, ok = unauthenticatedModes[h.Unauthenticated]; !ok {
		return fmt.Errorf("oidc_auth unauthenticated %q: want redirect or deny", h.Unauthenticated)
	}
	if h.SessionLifetime < 0 || h.SessionIdle < 0 {
		return errors.New("oidc_auth: session_lifetime and session_idle must not be negative")
	}
	return h.validateBearer()
}

// validateBearer checks the bearer block: an audience that is not the client's, a sane skew.
func (h *Handler) validateBearer() error {
	switch {
	case h.Bearer == nil:
		return nil
	case h.bearerAudience == "":
		return errors.New("oidc_auth bearer: an audience is required (bearer { audience ... }, or the handler's audience): the API's identifier at the provider")
	case h.bearerAudience == h.ClientID:
		return errors.New("oidc_auth bearer audience: it must not be the client_id, the audience of ID tokens (an ID token is not an access token)")
	case h.Bearer.ClockSkew < 0 || time.Duration(h.Bearer.ClockSkew) > maxBearerSkew:
		return fmt.Errorf("oidc_auth bearer clock_skew: between 0 and %s", maxBearerSkew)
	}
	return nil
}

// validateClientAuth checks that the client authentication method and the credentials agree:
// exactly one of client_secret and client_key, as the method says, so that a configuration
// never silently ignores a credential its operator wrote.
func (h *Handler) validateClientAuth() error {
	method, ok := clientAuths[h.ClientAuthMethod]
	switch {
	case !ok:
		return fmt.Errorf("oidc_auth client_auth_method %q: want client_secret_basic, client_secret_post, private_key_jwt or auto", h.ClientAuthMethod)
	case method == clientAuthPrivateKeyJWT && h.ClientKeyFile == "":
		return errors.New("oidc_auth client_auth_method private_key_jwt: client_key is required (the PEM file of the client's private key)")
	case method == clientAuthPrivateKeyJWT && h.ClientSecret != "":
		return errors.New("oidc_auth client_auth_method private_key_jwt: client_secret is not used with it; remove client_secret")
	case h.ClientKeyFile != "" && method != clientAuthAuto && method != clientAuthPrivateKeyJWT:
		return fmt.Errorf("oidc_auth client_key: used by private_key_jwt only, but client_auth_method is %s; remove one of them", h.ClientAuthMethod)
	case h.ClientKeyFile != "" && h.ClientSecret != "":
		return errors.New("oidc_auth: client_secret and client_key are both set; keep the one registered at the provider (client_key means private_key_jwt)")
	}
	return nil
}

// sameSites are the cookie same_site values; "" is the default, lax.
var sameSites = map[string]http.SameSite{"": http.SameSiteLaxMode, "lax": http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}

// unauthenticatedMode is what an unauthenticated request gets.
type unauthenticatedMode uint8

const (
	redirectNavigations unauthenticatedMode = iota // browser navigations go to the provider; the rest get 401
	denyAll                                        // everyone gets 401
)

var unauthenticatedModes = map[string]unauthenticatedMode{"redirect": redirectNavigations, "deny": denyAll}

func cookieNameRune(r rune) rune {
	if r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
		return r
	}
	return -1
}

func validateRedirectURI(s string) error {
	if strings.HasPrefix(s, "/") {
		if strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\?#") {
			return fmt.Errorf("oidc_auth redirect_uri %q: a path must be a plain absolute path", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasPrefix(u.Path, "/") {
		return fmt.Errorf("oidc_auth redirect_uri %q: want a path starting with / or an absolute http(s) URL", s)
	}
	return nil
}

// endpointPrefix is the directory of the redirect URI's path: /oauth2/callback → /oauth2/.
func endpointPrefix(redirectURI string) string {
	p := redirectURI
	if u, err := url.Parse(redirectURI); err == nil && u.Host != "" {
		p = u.Path
	}
	return p[:strings.LastIndexByte(p, '/')+1]
}
