package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// run is what one wrk run measured.
type wrkRun struct {
	rps      float64
	p50, p99 time.Duration
	requests int
	errors   int // non-2xx/3xx answers and socket errors
}

// result is a system's runs over the rounds, and whether any check after a run failed.
type result struct {
	runs   []wrkRun
	failed []string
}

func (r *result) medians() (rps float64, p50, p99 time.Duration, errs int) {
	var rs []float64
	var a, b []time.Duration
	for _, x := range r.runs {
		rs, a, b = append(rs, x.rps), append(a, x.p50), append(b, x.p99)
		errs += x.errors
	}
	return median(rs), median(a), median(b), errs
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measure runs the rounds: every system once a round, the order rotating so that none is
// always first or last; each run is checked after with one request.
func measure(o options, wrk string, l *lab) (map[string]*result, error) {
	if o.warmup > 0 {
		fmt.Printf("warming up: %s per system\n", o.warmup)
		for _, s := range l.systems {
			if _, err := runWrk(wrk, s, o.conns, o.threads, o.warmup); err != nil {
				return nil, err
			}
		}
	}
	results := map[string]*result{}
	for _, s := range l.systems {
		results[s.name] = &result{}
	}
	n := len(l.systems)
	for round := range o.rounds {
		fmt.Printf("round %d/%d:", round+1, o.rounds)
		for i := range n {
			s := l.systems[(round+i)%n]
			var profiled chan error
			if o.profile != "" && s.adminPort != 0 && round == o.rounds-1 {
				profiled = make(chan error, 1)
				go func() { profiled <- cpuProfile(s, o.dur, o.profile) }()
			}
			run, err := runWrk(wrk, s, o.conns, o.threads, o.dur)
			if err != nil {
				return nil, err
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					fmt.Printf(" (profile of %s: %v)", s.name, err)
				}
			}
			res := results[s.name]
			res.runs = append(res.runs, run)
			if err := check(s); err != nil {
				res.failed = append(res.failed, fmt.Sprintf("round %d: %v", round+1, err))
			}
			fmt.Printf(" %s %.0f/s", s.name, run.rps)
		}
		fmt.Println()
	}
	return results, nil
}

var (
	reqsPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	latencyPct = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	totalReqs  = regexp.MustCompile(`(\d+) requests in`)
	non2xx     = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	socketErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk loads the system for d and reads wrk's report.
func runWrk(wrk string, s *system, conns, threads int, d time.Duration) (wrkRun, error) {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())), "--latency"}
	for _, h := range s.headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command(wrk, append(args, s.url)...).CombinedOutput()
	if err != nil {
		return wrkRun{}, fmt.Errorf("wrk on %s: %v\n%s", s.desc, err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkRun, error) {
	var r wrkRun
	m := reqsPerSec.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's report:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range latencyPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := totalReqs.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	if m := non2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	if m := socketErrs.FindStringSubmatch(out); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.Atoi(v)
			r.errors += n
		}
	}
	return r, nil
}

// printTable shows the medians and their ratios to (a).
func printTable(w io.Writer, o options, l *lab, results map[string]*result) {
	fmt.Fprintf(w, "\nwrk -t%d -c%d, %s a run, %d round(s), medians; ratios to (a)\n\n", o.threads, o.conns, o.dur, o.rounds)
	baseRPS, baseP50, baseP99 := 0.0, time.Duration(0), time.Duration(0)
	if a := results["a"]; a != nil {
		baseRPS, baseP50, baseP99, _ = a.medians()
	}
	ratio := func(x, base float64) string {
		if base == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", x/base)
	}
	fmt.Fprintf(w, "| %-38s | %9s | %6s | %9s | %6s | %9s | %6s | %6s | %7s |\n",
		"system", "req/s", "×(a)", "p50", "×(a)", "p99", "×(a)", "errors", "cookie")
	fmt.Fprintf(w, "| %s | %s:| %s:| %s:| %s:| %s:| %s:| %s:| %s:|\n", strings.Repeat("-", 38), strings.Repeat("-", 9),
		strings.Repeat("-", 6), strings.Repeat("-", 9), strings.Repeat("-", 6), strings.Repeat("-", 9), strings.Repeat("-", 6),
		strings.Repeat("-", 6), strings.Repeat("-", 7))
	for _, s := range l.systems {
		rps, p50, p99, errs := results[s.name].medians()
		fmt.Fprintf(w, "| %-38s | %9.0f | %6s | %9s | %6s | %9s | %6s | %6d | %6dB |\n", s.desc, rps, ratio(rps, baseRPS),
			fmtDur(p50), ratio(float64(p50), float64(baseP50)), fmtDur(p99), ratio(float64(p99), float64(baseP99)),
			errs, len(s.cookieHeader()))
	}
	for _, s := range l.systems {
		for _, f := range results[s.name].failed {
			fmt.Fprintf(w, "CHECK FAILED after a run of %s, %s\n", s.desc, f)
		}
	}
	if b, c := results["b-groups"], results["c"]; b != nil && c != nil {
		brps, _, _, _ := b.medians()
		crps, _, _, _ := c.medians()
		fmt.Fprintf(w, "\n(b) + allow groups / (c): %s in requests/s\n", ratio(brps, crps))
	}
	if b, c := results["b"], results["c"]; b != nil && c != nil {
		brps, _, _, _ := b.medians()
		crps, _, _, _ := c.medians()
		fmt.Fprintf(w, "(b) / (c): %s in requests/s\n", ratio(brps, crps))
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// printMemory shows the peak and current RSS of every server process.
func printMemory(w io.Writer, l *lab, title string) {
	fmt.Fprintf(w, "\n%s (VmHWM / VmRSS from /proc/PID/status):\n", title)
	for _, s := range l.systems {
		if s.name == "d" {
			continue
		}
		hwm, rss := s.proc.peakRSS()
		fmt.Fprintf(w, "  %-50s %7.1f MB / %7.1f MB\n", "Caddy of "+s.desc, mb(hwm), mb(rss))
	}
	for _, p := range l.extra {
		hwm, rss := p.peakRSS()
		fmt.Fprintf(w, "  %-50s %7.1f MB / %7.1f MB\n", p.name, mb(hwm), mb(rss))
	}
}

func mb(kb int) float64 { return float64(kb) / 1024 }

// cpuProfile writes dir/SYSTEM.pprof: the system's Caddy profiled while wrk loads it (the run
// but its first and last half second).
func cpuProfile(s *system, d time.Duration, dir string) error {
	secs := max(int((d - time.Second).Seconds()), 1)
	time.Sleep(500 * time.Millisecond)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", s.adminPort, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof answered %s", resp.Status)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, s.name+".pprof"))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
