// Package browsertest drives a real headless Chromium through the demo's topology — the
// development identity provider on http://127.0.0.1:PORT, the protected site (Caddy with
// oidc_auth in front of the legacy app) on http://localhost:PORT — so that cookies, SameSite,
// cross-site form posts, URL fragments and frame blocking behave as they do for people.
//
// The tests need Chromium: Debian's chromium package at /usr/bin/chromium, or the path in
// $CHROMIUM. Without it they skip, except with CI=true, where they fail. A failing test leaves
// a screenshot and the page's HTML in $BROWSER_ARTIFACTS (default: the system temporary
// directory's caddy-oidc-auth-browser). With UPDATE_SCREENSHOTS=1, the suite also writes the
// README's screenshots to docs/screenshots.
//
// Caddy's running configuration is process-wide, so the tests run one at a time.
package browsertest
