package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// oauth2ProxyModule is the oauth2-proxy the comparison is made with.
const oauth2ProxyModule = "github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6"

// processes are the programs this run started, stopped at its end.
type processes struct {
	dir  string
	list []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs bin with args, its output into a log file in the run's directory.
func (ps *processes) start(name, bin string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	ps.list = append(ps.list, p)
	return p, nil
}

// stopAll ends every process this run started, by its own PID.
func (ps *processes) stopAll() {
	for _, p := range ps.list {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	ps.list = nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log, for an error message.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// waitHTTP waits until url answers (any status) or the process ends.
func (p *proc) waitHTTP(url string) error {
	c := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail())
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer at %s within 30s:\n%s", p.name, url, p.tail())
}

// peakRSS is the process's VmHWM and VmRSS, in kB.
func (p *proc) peakRSS() (hwm, rss int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmHWM":
			hwm = n
		case "VmRSS":
			rss = n
		}
	}
	return hwm, rss
}

// buildBinaries builds Caddy with this module and the development provider into dir.
func buildBinaries(dir string) (caddyBin, devidpBin string, err error) {
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	caddyBin, devidpBin = filepath.Join(dir, "caddy"), filepath.Join(dir, "devidp")
	for _, b := range []struct{ out, pkg string }{{caddyBin, "./cmd/caddy"}, {devidpBin, "./cmd/devidp"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return caddyBin, devidpBin, nil
}

// moduleRoot is the directory of this repository's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run this from inside the caddy-oidc-auth repository")
	}
	return filepath.Dir(gomod), nil
}

// installOAuth2Proxy installs oauth2-proxy into dir/gobin with go install.
func installOAuth2Proxy(dir string) (string, error) {
	gobin := filepath.Join(dir, "gobin")
	cmd := exec.Command("go", "install", oauth2ProxyModule)
	cmd.Dir = dir // outside the repository: its go.mod has no say
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", oauth2ProxyModule, err, lastLines(out, 10))
	}
	return filepath.Join(gobin, "oauth2-proxy"), nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort is a loopback port nothing listens on now.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// wrkPath finds wrk, or says how to get it.
func wrkPath() (string, error) {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", fmt.Errorf("wrk not found: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk; " +
			"else build https://github.com/wg/wrk with make) and put it on PATH")
	}
	return p, nil
}

// printMachine names what the figures were measured on.
func printMachine(w io.Writer, wrk string) {
	model, cores := "unknown", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "processor":
				cores++
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	wrkVersion, _ := exec.Command(wrk, "-v").CombinedOutput()
	wv, _, _ := strings.Cut(string(wrkVersion), " Copyright")
	fmt.Fprintf(w, "machine: %s, %d cores (/proc/cpuinfo), Linux %s, %s, %s\n",
		model, cores, bytes.TrimSpace(kernel), runtime.Version(), strings.TrimSpace(wv))
}
