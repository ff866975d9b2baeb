package caddymodule

import "slices"

// startupWarnings are the sentences logged as warnings once the handler is provisioned: a
// configuration that loads but will not do what its operator expects.
func (h *Handler) startupWarnings() []string {
	var warnings []string
	if h.Refresh && !slices.Contains(h.Scopes, "offline_access") {
		warnings = append(warnings, "refresh is on but scopes lacks offline_access: most providers "+
			"(Auth0 and Keycloak among them) then send no refresh token, so nothing is renewed and a "+
			"session forwarding an access token ends when that token expires; add offline_access to scopes")
	}
	return warnings
}
