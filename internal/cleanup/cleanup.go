// Package cleanup removes from machines what a node bundle made on them: kubeadm reset, kubelet
// and containerd with their units, binaries and state, the CNI's configuration, interfaces and
// iptables rules, and the bundle's own files, so the machines can be bootstrapped again. The
// work on each host is candi/bashible/cleanup.sh, run over SSH on every host at once (bounded).
// Abort (a failed bootstrap), destroy (a static cluster) and converge (a removed node) use it.
package cleanup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// ScriptPath is the cleanup script inside the candi tree.
const ScriptPath = "bashible/cleanup.sh"

// DefaultPerHostTimeout bounds the cleanup of one host: kubeadm reset (itself bounded to 2 min
// in the script), stopping services, removing files.
const DefaultPerHostTimeout = 5 * time.Minute

// Script returns the cleanup script from the candi tree.
func Script(candi fs.FS) ([]byte, error) {
	b, err := fs.ReadFile(candi, ScriptPath)
	if err != nil {
		return nil, fmt.Errorf("candi: reading the cleanup script: %w", err)
	}
	return b, nil
}

// Status is the outcome on one host.
type Status string

// Outcomes.
const (
	StatusCleaned     Status = "cleaned"     // nothing of the cluster is left
	StatusFailed      Status = "failed"      // reached, but something could not be removed
	StatusUnreachable Status = "unreachable" // could not connect or log in: nothing was done
)

// HostReport is what the cleanup did on one host.
type HostReport struct {
	Host     string
	Status   Status
	Did      []string // what was removed or stopped, in order ("::did" lines)
	Failed   []string // what could not be ("::failed" lines)
	Err      error
	Duration time.Duration
}

// Report is the cleanup of every host, in the order given.
type Report struct {
	Hosts []HostReport
}

// AllCleaned reports whether every host was cleaned.
func (r Report) AllCleaned() bool {
	for _, h := range r.Hosts {
		if h.Status != StatusCleaned {
			return false
		}
	}
	return true
}

// Cleaned lists the hosts that were cleaned.
func (r Report) Cleaned() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Status == StatusCleaned {
			out = append(out, h.Host)
		}
	}
	return out
}

// NotCleaned lists the hosts that were not cleaned (failed or unreachable).
func (r Report) NotCleaned() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Status != StatusCleaned {
			out = append(out, h.Host)
		}
	}
	return out
}

// Err joins the errors of the hosts that were not cleaned (nil when all were).
func (r Report) Err() error {
	var errs []error
	for _, h := range r.Hosts {
		if h.Status != StatusCleaned {
			errs = append(errs, fmt.Errorf("host %s: %s: %w", h.Host, h.Status, h.Err))
		}
	}
	return errors.Join(errs...)
}

// WriteTo prints the per-host report for a person.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, h := range r.Hosts {
		fmt.Fprintf(&b, "%s: %s (%v)\n", h.Host, h.Status, h.Duration.Round(100*time.Millisecond))
		if len(h.Did) == 0 && h.Status == StatusCleaned {
			b.WriteString("  nothing to remove: already clean\n")
		}
		for _, d := range h.Did {
			fmt.Fprintf(&b, "  - %s\n", d)
		}
		for _, f := range h.Failed {
			fmt.Fprintf(&b, "  FAILED: %s\n", f)
		}
		if h.Status != StatusCleaned && h.Err != nil {
			fmt.Fprintf(&b, "  error: %v\n", h.Err)
		}
	}
	return b.WriteTo(w)
}

// Options tune Clean.
type Options struct {
	// Concurrency is how many hosts are cleaned at once (ssh.DefaultConcurrency when 0).
	Concurrency int
	// PerHostTimeout bounds each host (DefaultPerHostTimeout when 0).
	PerHostTimeout time.Duration
	Log            *slog.Logger
}

// Clean runs script (see Script) as root on every client at once and reports per host. A host
// that cannot be reached is reported as unreachable; the others are cleaned all the same.
func Clean(ctx context.Context, clients []*ssh.Client, script []byte, opts Options) Report {
	if opts.PerHostTimeout <= 0 {
		opts.PerHostTimeout = DefaultPerHostTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	results := ssh.Fanout(ctx, clients, ssh.FanoutOptions{Concurrency: opts.Concurrency, PerHostTimeout: opts.PerHostTimeout},
		func(ctx context.Context, c *ssh.Client) (HostReport, error) {
			if err := c.Connect(ctx); err != nil {
				return HostReport{Status: StatusUnreachable}, err
			}
			log.Info("cleaning up", "host", c.Host())
			return cleanOne(ctx, c, script)
		})
	rep := Report{Hosts: make([]HostReport, len(results))}
	for i, r := range results {
		h := r.Value
		h.Host, h.Err, h.Duration = clients[i].Host(), r.Err, r.Duration
		switch {
		case r.Err == nil:
			h.Status = StatusCleaned
		case h.Status == "":
			// Fanout's own failures (timeout, cancellation before start, panic) and a lost
			// connection: something may have been done.
			h.Status = StatusFailed
			var ce *ssh.ConnectError
			if errors.As(r.Err, &ce) && len(h.Did) == 0 {
				h.Status = StatusUnreachable
			}
		}
		log.Info("cleanup finished", "host", h.Host, "status", h.Status, "actions", len(h.Did), "took", h.Duration.Round(10*time.Millisecond))
		rep.Hosts[i] = h
	}
	return rep
}

// Hosts opens hosts with open, cleans them all with candi's script (see Clean), closes them and
// writes the report to out: what abort and destroy do to static machines.
func Hosts(ctx context.Context, candi fs.FS, hosts []string, open func(hosts []string) ([]*ssh.Client, error), opts Options, out io.Writer) (Report, error) {
	script, err := Script(candi)
	if err != nil {
		return Report{}, err
	}
	clients, err := open(hosts)
	if err != nil {
		return Report{}, err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	rep := Clean(ctx, clients, script, opts)
	_, err = rep.WriteTo(out)
	return rep, err
}

// cleanOne runs the script and reads its report lines. The script is fed on stdin to a temporary
// file and run with stdin closed (as ssh.Client.RunScript does), its stdout captured.
func cleanOne(ctx context.Context, c *ssh.Client, script []byte) (HostReport, error) {
	var out bytes.Buffer
	cmd := `f=$(mktemp "${TMPDIR:-/tmp}/dhctl-cleanup.XXXXXXXX") || exit 1; trap 'rm -f "$f"' EXIT; ` +
		`cat >"$f" && bash "$f" </dev/null`
	_, err := c.Run(ctx, ssh.Command{Cmd: cmd, Sudo: true, Stdin: bytes.NewReader(script), Stdout: &out, LogAs: "cleanup script"})
	h := parseOutput(out.Bytes())
	h.Status = StatusFailed
	if err == nil && !h.clean {
		err = errors.New("the cleanup script ended without reporting the host clean")
	}
	if err != nil && len(h.Failed) > 0 {
		err = fmt.Errorf("%w (could not: %s)", err, strings.Join(h.Failed, "; "))
	}
	if err == nil {
		h.Status = StatusCleaned
	}
	return h.HostReport, err
}

type parsed struct {
	HostReport
	clean bool
}

func parseOutput(out []byte) parsed {
	var p parsed
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "::did "):
			p.Did = append(p.Did, strings.TrimPrefix(line, "::did "))
		case strings.HasPrefix(line, "::failed "):
			p.Failed = append(p.Failed, strings.TrimPrefix(line, "::failed "))
		case line == "::clean":
			p.clean = true
		}
	}
	return p
}
