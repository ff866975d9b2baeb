package caddymodule

import (
	"net/url"
	"slices"
	"strings"
)

// startupWarnings are the sentences logged as warnings once the handler is provisioned: a
// configuration that loads but will not do what its operator expects.
func (h *Handler) startupWarnings() []string {
	var warnings []string
	if h.Refresh && !slices.Contains(h.Scopes, "offline_access") {
		warnings = append(warnings, "refresh is on but scopes lacks offline_access: Auth0 then sends "+
			"no refresh token, and Keycloak's stops working when its SSO session ends, so a session "+
			"forwarding an access token ends once that token expires unrenewed; add offline_access to scopes")
	}
	if h.headers.accessToken != "" && h.Audience == "" && h.Bearer == nil {
		warnings = append(warnings, "headers access_token is set but audience is not: only an access token verified for "+
			"the audience is ever forwarded, so the application will never get "+h.headers.accessToken)
	}
	if h.prefix == "/" {
		warnings = append(warnings, "redirect_uri "+h.RedirectURI+" puts the module's endpoints at the site's root: /start, "+
			"/logout, /userinfo and the others are answered by the module, never by the application; use a "+
			"directory of their own, e.g. /oauth2/callback")
	}
	if u, err := url.Parse(h.RedirectURI); err == nil && u.Scheme == "http" && !h.Cookie.Insecure && !isLoopback(u.Hostname()) {
		warnings = append(warnings, "redirect_uri is plain http on "+u.Hostname()+" and the cookies are Secure: browsers keep "+
			"them over plain http only on localhost (and, in current browsers, 127.0.0.1), so sign-ins will not complete; serve the site over https")
	}
	if h.SessionIdle > 0 && h.SessionIdle >= h.SessionLifetime {
		warnings = append(warnings, "session_idle is not shorter than session_lifetime: sessions end at session_lifetime "+
			"before they could go idle")
	}
	return warnings
}

// isLoopback reports whether host is one a browser treats as secure over plain http.
func isLoopback(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || host == "127.0.0.1" || host == "::1"
}
