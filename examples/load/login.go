package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A scripted browser: a cookie jar of its own, following redirects, submitting the
// development provider's sign-in form as a person would (choosing signInAs).

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	formTx     = regexp.MustCompile(`name="tx" value="([^"]*)"`)
)

// browse starts at start and follows the flow to its end: every redirect, and the provider's
// sign-in page when it shows. It returns the jar and the last answer's body.
func browse(start string) (*cookiejar.Jar, string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(u string) (*http.Response, string, error) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Accept", "text/html") // a navigation: sent to sign in, not refused
		return do(c, req)
	}
	resp, body, err := get(start)
	if err != nil {
		return nil, "", err
	}
	if m := formTx.FindStringSubmatch(body); m != nil {
		a := formAction.FindStringSubmatch(body)
		if a == nil {
			return nil, "", fmt.Errorf("the sign-in page at %s has no form", resp.Request.URL)
		}
		action, err := resp.Request.URL.Parse(html.UnescapeString(a[1]))
		if err != nil {
			return nil, "", err
		}
		form := url.Values{"tx": {html.UnescapeString(m[1])}, "user": {signInAs}}
		req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		if resp, body, err = do(c, req); err != nil {
			return nil, "", err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("the flow ended at %s with %d: %.300s", resp.Request.URL, resp.StatusCode, body)
	}
	return jar, body, nil
}

func do(c *http.Client, req *http.Request) (*http.Response, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

// moduleLogin signs in at an oidc_auth site and returns its session cookie(s), as a Cookie
// header's part.
func moduleLogin(site string) (string, error) {
	jar, body, err := browse(site)
	if err != nil {
		return "", err
	}
	if body != answer {
		return "", fmt.Errorf("after signing in the site answered %q, not the upstream's %q", body, answer)
	}
	return cookiesNamed(jar, site, moduleCookie)
}

// oauth2ProxyLogin signs in through oauth2-proxy's /oauth2/start and returns its session
// cookie(s).
func oauth2ProxyLogin(base string) (string, error) {
	jar, body, err := browse(base + "/oauth2/start?rd=%2F")
	if err != nil {
		return "", err
	}
	if body != answer {
		return "", fmt.Errorf("after signing in oauth2-proxy answered %q, not the upstream's %q", body, answer)
	}
	return cookiesNamed(jar, base, o2pCookie)
}

// cookiesNamed is the jar's cookie called name, whole or in chunks (name_0, name_1, ...), as
// a Cookie header's part. (A jar keeps cookies by host, not port: on loopback every
// server's cookies are in it.)
func cookiesNamed(jar *cookiejar.Jar, site, name string) (string, error) {
	u, err := url.Parse(site)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, c := range jar.Cookies(u) {
		rest, ok := strings.CutPrefix(c.Name, name)
		if rest == "" && ok {
			parts = append(parts, c.Name+"="+c.Value)
		} else if n, err := strconv.Atoi(strings.TrimPrefix(rest, "_")); ok && err == nil && n >= 0 && strings.HasPrefix(rest, "_") {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("no %s cookie after signing in", name)
	}
	return strings.Join(parts, "; "), nil
}

// clientCredentials gets an access token for bearerAud from the provider, as a machine
// client does.
func clientCredentials(issuer string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
		"client_secret": {clientSecret}, "audience": {bearerAud}}
	resp, err := http.PostForm(issuer+"oauth/token", form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("the token endpoint answered %d (%v)", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}
