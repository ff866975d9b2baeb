package caddymodule

import "slices"

// startupWarnings are the sentences logged as warnings once the handler is provisioned: a
// configuration that loads but will not do what its operator expects.
func (h *Handler) startupWarnings() []string {
	var warnings []string
	if h.Refresh && !slices.Contains(h.Scopes, "offline_access") {
		warnings = append(warnings, "refresh is on but scopes lacks offline_access: Auth0 then sends "+
			"no refresh token, and Keycloak's stops working when its SSO session ends, so a session "+
			"forwarding an access token ends once that token expires unrenewed; add offline_access to scopes")
	}
	return warnings
}
