// Command load measures what an authenticated request costs through this module, side by side
// with plain Caddy and with oauth2-proxy, on loopback, and the memory a Caddy holds with many
// distinct sessions. Run it from anywhere in the repository:
//
//	go run ./examples/load                       # every system, 5 rounds of 10s
//	go run ./examples/load -d 2s -rounds 1       # a quick check that everything works
//	go run ./examples/load -systems a,b,b-groups,c -rounds 7
//
// It builds ./cmd/caddy and ./cmd/devidp into a temporary directory (and installs
// oauth2-proxy v7.15.6 there with go install when (c) or (d) is asked for; those two are
// skipped with a message if that fails), starts an upstream that gives every request the
// same small answer, the development provider, redis-server when a Redis variant is asked
// for, one Caddy process per system (logging at ERROR) and oauth2-proxy. It signs in for
// real: a scripted browser (a cookie jar that follows redirects and submits the provider's
// sign-in form) through each oidc_auth Caddy and through oauth2-proxy's /oauth2/start, and
// takes the session cookies; the bearer variant gets a client_credentials token from the
// provider's /oauth/token.
//
// The systems (-systems, comma-separated; default all):
//
//	a          Caddy reverse_proxy alone, sent the same cookie
//	b          Caddy oidc_auth + reverse_proxy, a valid session cookie
//	c          Caddy forward_auth to oauth2-proxy + reverse_proxy, a valid oauth2-proxy cookie
//	d          oauth2-proxy alone in front of the upstream
//	b-groups   b with allow { groups staff }: a decision cached per session
//	b-expr     b with an allow expression reading request.path: decided on every request
//	b-redis    b with store redis and server_side_sessions on (the cookie is a ticket)
//	b-assert   b with the signed identity assertion (assertion { audience; issuer })
//	b-bearer   b with bearer { audience api }, sent a client_credentials access token
//
// Every system is sent one Cookie header holding the module's session cookie and
// oauth2-proxy's, so each parses the same bytes; a variant whose session differs (each
// variant signs in on its own, since its configuration decides what the session keeps)
// sends its own session cookie in the module's place. The table gives the header's size.
//
// Each round runs every system once with wrk (-c connections, -d long, -t threads), the
// order rotating from round to round; each run is checked before and after with one request
// that must get the upstream's answer. The table shows medians over the rounds of requests/s
// and wrk's p50 and p99 latency, and their ratios to (a).
//
// Then, for the systems in -mem (default b and b-redis), -sessions distinct sessions
// (default 10,000) are each sent once, and the Caddy process's peak RSS (VmHWM in
// /proc/PID/status) is shown before and after. Those sessions are minted, not signed in: the
// script knows the session secret, opens the session of its real sign-in with the module's
// own sealer and codec (internal/session, as the module's tests do), and seals copies with
// new IDs and subjects; for server-side sessions it writes each sealed session into Redis
// where the module keeps them (the key prefix read from its real sign-in) and sends the
// sealed ticket. Minted sessions skip what a sign-in adds (the in-process session registry's
// record, one per sign-in).
//
// Needs wrk (apt-get install wrk, or build github.com/wg/wrk), and redis-server for b-redis
// (apt-get install redis-server). Linux only (/proc). See README.md beside this file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// allSystems in the order the table shows them.
var allSystems = []string{"a", "b", "c", "d", "b-groups", "b-expr", "b-redis", "b-assert", "b-bearer"}

type options struct {
	systems  []string
	mem      []string
	rounds   int
	dur      time.Duration
	warmup   time.Duration
	conns    int
	threads  int
	sessions int
	o2pBin   string
	keep     bool
	profile  string // a directory: each Caddy's CPU profile of its last run is written there
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("load: ")
	var o options
	systems := flag.String("systems", strings.Join(allSystems, ","), "systems to measure, comma-separated: "+strings.Join(allSystems, ", "))
	mem := flag.String("mem", "b,b-redis", "systems whose memory is measured with -sessions distinct sessions (any of b, b-groups, b-expr, b-redis, b-assert); empty for none")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every system once")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "duration of each wrk run, whole seconds")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "a wrk run per system before the rounds, not counted, whole seconds; 0 for none")
	flag.IntVar(&o.conns, "c", 32, "wrk connections")
	flag.IntVar(&o.threads, "t", 2, "wrk threads")
	flag.IntVar(&o.sessions, "sessions", 10_000, "distinct sessions sent in the memory phase; 0 skips it")
	flag.StringVar(&o.o2pBin, "oauth2-proxy", "", "an oauth2-proxy binary to use instead of installing v7.15.6")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, configurations, logs)")
	flag.StringVar(&o.profile, "profile", "", "a directory: each Caddy runs its admin endpoint, and a CPU profile of its last run is written there as SYSTEM.pprof (go tool pprof -top DIR/b.pprof)")
	flag.Parse()
	var err error
	if o.systems, err = pick(*systems, allSystems); err != nil {
		log.Fatal(err)
	}
	if o.mem, err = pick(*mem, []string{"b", "b-groups", "b-expr", "b-redis", "b-assert"}); err != nil {
		log.Fatal(err)
	}
	if o.rounds < 1 || o.conns < 1 || o.threads < 1 || o.threads > o.conns || o.dur < time.Second {
		log.Fatal("want -rounds ≥ 1, -c ≥ 1, 1 ≤ -t ≤ -c and -d ≥ 1s (wrk counts whole seconds)")
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// pick checks a comma-separated list against known names, keeping the known order.
func pick(list string, known []string) ([]string, error) {
	var want []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown system %q (known: %s)", s, strings.Join(known, ", "))
		}
		want = append(want, s)
	}
	var out []string
	for _, s := range known {
		if slices.Contains(want, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func run(o options) error {
	wrk, err := wrkPath()
	if err != nil {
		return err
	}
	printMachine(os.Stdout, wrk)

	dir, err := os.MkdirTemp("", "oidc-load-")
	if err != nil {
		return err
	}
	procs := &processes{dir: dir}
	cleanup := func() {
		procs.stopAll()
		if o.keep {
			fmt.Printf("\nkept %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		cleanup()
		os.Exit(130)
	}()

	lab, err := setUp(o, procs)
	if err != nil {
		if errors.Is(err, errNothingToMeasure) {
			fmt.Println(err)
			return nil
		}
		return err
	}
	results, err := measure(o, wrk, lab)
	if err != nil {
		return err
	}
	printTable(os.Stdout, o, lab, results)
	printMemory(os.Stdout, lab, "peak RSS after the rounds")
	if o.sessions > 0 && len(o.mem) > 0 {
		return memoryPhase(os.Stdout, o, lab)
	}
	return nil
}
