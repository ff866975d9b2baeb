package devidp

import (
	"encoding/json"
	"net/http"
)

// discoveryDoc is the OpenID Provider Metadata; it lists only what the provider implements.
type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	EndSessionEndpoint                string   `json:"end_session_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	RequestParameterSupported         bool     `json:"request_parameter_supported"`
	BackchannelLogoutSupported        bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported bool     `json:"backchannel_logout_session_supported"`
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer()
	d := discoveryDoc{
		Issuer:                 iss,
		AuthorizationEndpoint:  iss + "authorize",
		TokenEndpoint:          iss + "oauth/token",
		UserinfoEndpoint:       iss + "userinfo",
		JWKSURI:                iss + ".well-known/jwks.json",
		ScopesSupported:        []string{"openid", "profile", "email", "offline_access"},
		ResponseTypesSupported: []string{"code", "token", "id_token token"},
		ResponseModesSupported: []string{"query", "fragment", "form_post"},
		GrantTypesSupported: []string{"authorization_code", "implicit", "refresh_token", "client_credentials",
			grantTokenExchange},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		TokenEndpointAuthSigningAlgs:      []string{"RS256", "ES256"},
		CodeChallengeMethodsSupported:     []string{"S256", "plain"},
		ClaimsSupported: []string{"aud", "auth_time", "azp", "email", "email_verified", "exp", "iat",
			"iss", "name", "nickname", "nonce", "preferred_username", "sid", "sub", "updated_at",
			"groups", "roles", "impersonated", "impersonator", "act"},
		BackchannelLogoutSupported:        true,
		BackchannelLogoutSessionSupported: true,
	}
	m := s.misbehaviour()
	if m.has(DiscoveryWrongIssuer) {
		d.Issuer = WrongIssuer
	}
	switch {
	case m.has(TokenAuthPostOnly):
		d.TokenEndpointAuthMethodsSupported, d.TokenEndpointAuthSigningAlgs = []string{"client_secret_post"}, nil
	case m.has(TokenAuthBasicOnly):
		d.TokenEndpointAuthMethodsSupported, d.TokenEndpointAuthSigningAlgs = []string{"client_secret_basic"}, nil
	}
	if !s.cfg.DisableEndSession {
		d.EndSessionEndpoint = iss + "oidc/logout"
	}
	writeJSON(w, http.StatusOK, d)
}

// writeJSON answers v as JSON. Nothing the provider answers may be cached: tokens, errors,
// and discovery that tests change between runs.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// oauthError answers an RFC 6749 error as JSON.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, description})
}
