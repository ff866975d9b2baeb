package caddymodule

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/relyingparty/caddy-oidc-auth/internal/jwk"
)

// Client authentication with private_key_jwt (RFC 7523, OpenID Connect Core §9): every call
// to the token endpoint carries a short-lived JWT signed with the client's private key instead
// of a client secret.

const (
	// assertionType is the client_assertion_type of a JWT client assertion (RFC 7523 §2.2).
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionTTL is how long a client assertion is valid: long enough for one request.
	assertionTTL = time.Minute
	// minRSABits is the smallest RSA key accepted (NIST SP 800-131A).
	minRSABits = 2048
	// maxClientKeyFile bounds what is read of client_key: a PEM private key is a few KiB.
	maxClientKeyFile = 64 << 10
	// maxTokenRequest bounds the token request body the assertion is added to; the bodies
	// oauth2 builds are a few hundred bytes.
	maxTokenRequest = 64 << 10
)

// clientKey signs client assertions: RS256 with an RSA key, ES256 with a P-256 key.
type clientKey struct {
	signer crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
	alg    string        // RS256 or ES256
	kid    string        // the RFC 7638 thumbprint of the public key
}

// loadClientKey reads the PEM file at path. Errors describe the file, never its content.
func loadClientKey(path string) (*clientKey, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return nil, fmt.Errorf("cannot read it: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxClientKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxClientKeyFile {
		return nil, errors.New("too large for a PEM private key")
	}
	return parseClientKey(b)
}

// parseClientKey reads the first private key of a PEM document: PKCS#8 ("PRIVATE KEY"),
// PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). The "EC PARAMETERS" block that
// `openssl ecparam -genkey` writes first is skipped.
func parseClientKey(b []byte) (*clientKey, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted {
			return nil, errors.New("the key is encrypted; give the key unencrypted, readable by Caddy only")
		}
		var key any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted; give the key unencrypted, readable by Caddy only")
		default:
			return nil, fmt.Errorf("a PEM %q block, not a private key", block.Type)
		}
		if err != nil {
			// The parser's message names the format, never key material.
			return nil, fmt.Errorf("the PEM %q block does not parse: %w", block.Type, err)
		}
		return newClientKey(key)
	}
}

// newClientKey accepts an RSA key of at least minRSABits bits or a P-256 key.
func newClientKey(key any) (*clientKey, error) {
	k := &clientKey{}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if bits := key.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("an RSA key of %d bits; at least %d are required", bits, minRSABits)
		}
		k.signer, k.alg = key, "RS256"
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("an EC key on %s; only P-256 (ES256) is supported", key.Curve.Params().Name)
		}
		k.signer, k.alg = key, "ES256"
	default:
		return nil, fmt.Errorf("an unsupported key type (%s); want RSA (%d bits or more) or EC P-256", keyKind(key), minRSABits)
	}
	var err error
	if k.kid, err = jwk.Thumbprint(k.signer.Public()); err != nil {
		return nil, err
	}
	return k, nil
}

// keyKind names a key type for an error message: "ed25519.PrivateKey" → "ed25519".
func keyKind(key any) string {
	s := strings.TrimPrefix(fmt.Sprintf("%T", key), "*")
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	return s
}

var b64 = base64.RawURLEncoding

// assertion is a client assertion for clientID at audience, valid from now for assertionTTL,
// with a fresh jti so the provider can refuse a replay.
func (k *clientKey) assertion(clientID, audience string, now time.Time) (string, error) {
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.alg, k.kid, "JWT"})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Jti string `json:"jti"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}{clientID, clientID, audience, randomToken(16), now.Unix(), now.Add(assertionTTL).Unix()})
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	switch key := k.signer.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		// JWS (RFC 7518 §3.4) wants r || s, each 32 bytes, not the ASN.1 of crypto.Signer.
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, key, sum[:]); err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	}
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// assertionAudience is the aud of client assertions: the token endpoint, as OpenID Connect
// Core §9 recommends, except at Auth0, whose documentation requires the tenant URL (the issuer).
func assertionAudience(issuer, tokenURL string) string {
	if isAuth0(issuer) {
		return issuer
	}
	return tokenURL
}

// assertingTransport adds the client assertion to every form POST to the token endpoint.
//
// Why a transport rather than parameters at each call: the code exchange could pass the
// assertion as an option, but oauth2's TokenSource (refresh) takes no extra parameters, and
// re-implementing the token request and its response parsing for refresh alone would be a
// second, diverging token client. Here every token endpoint call of this provider's own
// http.Client — code exchange, refresh, and any added later — carries a fresh assertion (a
// new jti each, minted when it is sent), and no call can forget it. It touches nothing else:
// only POSTs whose URL is exactly the discovered token endpoint; a redirect elsewhere is
// re-sent by net/http from oauth2's original body, without the assertion.
type assertingTransport struct {
	next http.RoundTripper
	p    *provider
}

func (t *assertingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	key := t.p.cfg.clientKey
	d := t.p.cur.Load()
	if key == nil || d == nil || r.Method != http.MethodPost || r.Body == nil || !sameURL(r.URL, d.endpoint.TokenURL) {
		return t.next.RoundTrip(r)
	}
	form, err := readForm(r)
	if err != nil {
		return nil, fmt.Errorf("adding the client assertion: %w", err)
	}
	a, err := key.assertion(t.p.cfg.clientID, assertionAudience(d.issuer, d.endpoint.TokenURL), t.p.cfg.now())
	if err != nil {
		return nil, err
	}
	form.Del("client_secret")
	form.Set("client_id", t.p.cfg.clientID)
	form.Set("client_assertion_type", assertionType)
	form.Set("client_assertion", a)
	body := []byte(form.Encode())
	// A RoundTripper must not change the request it is given: send a copy.
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization") // never client_secret_basic beside the assertion
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r2.ContentLength = int64(len(body))
	return t.next.RoundTrip(r2)
}

// sameURL tells whether u is target as oauth2 sends it: parsed, then written back.
func sameURL(u *url.URL, target string) bool {
	t, err := url.Parse(target)
	return err == nil && u.String() == t.String()
}

// CloseIdleConnections passes on to the wrapped transport, so Cleanup closes its connections.
func (t *assertingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// readForm reads and closes an urlencoded request body.
func readForm(r *http.Request) (url.Values, error) {
	defer r.Body.Close()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, fmt.Errorf("a token request of type %q", ct)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxTokenRequest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTokenRequest {
		return nil, errors.New("token request too large")
	}
	return url.ParseQuery(string(b))
}
