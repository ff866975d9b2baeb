// Endpoint faults: the token, userinfo, discovery and JWKS endpoints answering 500, an HTML
// page, truncated JSON, or nothing at all, each switched on by its own Misbehaviour.

package devidp

import (
	"bytes"
	"io"
	"net/http"
)

// The endpoints that can fail, as the fault switches name them.
const (
	endpointToken     = "token"
	endpointUserinfo  = "userinfo"
	endpointDiscovery = "discovery"
	endpointJWKS      = "jwks"
)

// The ways an endpoint can fail.
const (
	fault500       = "500"       // 500 with a plain-text body
	faultHTML      = "html"      // 200 with an HTML page, as a captive portal or a proxy's error page
	faultTruncated = "truncated" // the real answer's status and headers, and the first half of its body
	faultSlow      = "slow"      // no answer until the request's context ends
)

// Endpoint faults. The real handler still runs under the truncated fault (a code is spent);
// under the others it does not.
const (
	TokenEndpoint500       Misbehaviour = endpointToken + "-" + fault500
	TokenEndpointHTML      Misbehaviour = endpointToken + "-" + faultHTML
	TokenEndpointTruncated Misbehaviour = endpointToken + "-" + faultTruncated
	TokenEndpointSlow      Misbehaviour = endpointToken + "-" + faultSlow
	Userinfo500            Misbehaviour = endpointUserinfo + "-" + fault500
	UserinfoHTML           Misbehaviour = endpointUserinfo + "-" + faultHTML
	UserinfoTruncated      Misbehaviour = endpointUserinfo + "-" + faultTruncated
	UserinfoSlow           Misbehaviour = endpointUserinfo + "-" + faultSlow
	Discovery500           Misbehaviour = endpointDiscovery + "-" + fault500
	DiscoveryHTML          Misbehaviour = endpointDiscovery + "-" + faultHTML
	DiscoveryTruncated     Misbehaviour = endpointDiscovery + "-" + faultTruncated
	DiscoverySlow          Misbehaviour = endpointDiscovery + "-" + faultSlow
	JWKS500                Misbehaviour = endpointJWKS + "-" + fault500
	JWKSHTML               Misbehaviour = endpointJWKS + "-" + faultHTML
	JWKSTruncated          Misbehaviour = endpointJWKS + "-" + faultTruncated
	JWKSSlow               Misbehaviour = endpointJWKS + "-" + faultSlow
)

func faultSwitches() []Misbehaviour {
	var out []Misbehaviour
	for _, e := range []string{endpointToken, endpointUserinfo, endpointDiscovery, endpointJWKS} {
		for _, f := range []string{fault500, faultHTML, faultTruncated, faultSlow} {
			out = append(out, Misbehaviour(e+"-"+f))
		}
	}
	return out
}

const faultPage = "<!doctype html>\n<html><head><title>Service unavailable</title></head>\n" +
	"<body><h1>Service unavailable</h1><p>Please try again later.</p></body></html>\n"

// faulty wraps the handler of endpoint so that its fault switches take effect.
func (s *Server) faulty(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := s.misbehaviour()
		is := func(f string) bool { return m.has(Misbehaviour(endpoint + "-" + f)) }
		switch {
		case is(faultSlow):
			if s.hanging != nil {
				s.hanging(r)
			}
			// The server notices the client going away only once the body has been read:
			// without this, a POST (the token endpoint) would hang until the server closes.
			_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody))
			<-r.Context().Done()
		case is(fault500):
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		case is(faultHTML):
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, faultPage)
		case is(faultTruncated):
			rec := &recorder{header: http.Header{}, status: http.StatusOK}
			h(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			body := rec.body.Bytes()
			w.Write(body[:len(body)/2])
		default:
			h(w, r)
		}
	}
}

// recorder keeps an answer so that it can be sent cut short.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
