// Package caddyoidcauth lets xcaddy build Caddy with the oidc_auth module from the module
// root: xcaddy cannot build a sub-package of an unpublished module from a local checkout.
package caddyoidcauth

import _ "github.com/relyingparty/caddy-oidc-auth/caddymodule"
