package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Host is what dhctl learns about a machine before rendering its bundle.
type Host struct {
	Family       OSFamily
	PrettyName   string
	Hostname     string
	CgroupDriver string // "systemd" when systemd is PID 1, else "cgroupfs"
}

// DetectHost reads the machine's OS, host name and init system.
func DetectHost(ctx context.Context, c *ssh.Client) (Host, error) {
	out, err := c.Output(ctx, ssh.Command{Cmd: "cat /etc/os-release; echo '::dhctl::'; cat /proc/1/comm; echo '::dhctl::'; hostname", LogAs: "detect OS"})
	if err != nil {
		return Host{}, fmt.Errorf("host %s: detecting the OS: %w", c.Host(), err)
	}
	parts := strings.Split(out, "::dhctl::\n")
	if len(parts) != 3 {
		return Host{}, fmt.Errorf("host %s: unexpected answer while detecting the OS (is /etc/os-release readable?)", c.Host())
	}
	fam, pretty, err := FamilyOf(parts[0])
	if err != nil {
		return Host{}, fmt.Errorf("host %s: %w", c.Host(), err)
	}
	h := Host{Family: fam, PrettyName: pretty, Hostname: strings.TrimSpace(parts[2]), CgroupDriver: "cgroupfs"}
	if strings.TrimSpace(parts[1]) == "systemd" {
		h.CgroupDriver = "systemd"
	}
	return h, nil
}

// FamilyOf maps an /etc/os-release to the bundle family; an unsupported OS is an error saying
// which are supported.
func FamilyOf(osRelease string) (OSFamily, string, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(osRelease, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			kv[k] = strings.Trim(v, `"'`)
		}
	}
	ids := " " + kv["ID"] + " " + kv["ID_LIKE"] + " "
	pretty := kv["PRETTY_NAME"]
	if pretty == "" {
		pretty = kv["ID"] + " " + kv["VERSION_ID"]
	}
	switch {
	case strings.Contains(ids, " debian ") || strings.Contains(ids, " ubuntu "):
		return Debian, pretty, nil
	case strings.Contains(ids, " rhel ") || strings.Contains(ids, " centos ") || strings.Contains(ids, " rocky ") ||
		strings.Contains(ids, " almalinux ") || strings.Contains(ids, " fedora "):
		return RHEL, pretty, nil
	}
	return "", pretty, fmt.Errorf("unsupported OS %q (ID=%s ID_LIKE=%s): dhctl supports Debian and Ubuntu, and the RHEL family (Rocky Linux, AlmaLinux, CentOS Stream)",
		pretty, kv["ID"], kv["ID_LIKE"])
}

// StepStatus is what happened to one step.
type StepStatus string

// Step statuses.
const (
	StepRan     StepStatus = "ran"
	StepSkipped StepStatus = "skipped" // unchanged since it last succeeded
	StepFailed  StepStatus = "failed"
)

// StepResult is one step of a run.
type StepResult struct {
	Name     string
	Status   StepStatus
	Duration time.Duration
}

// Report is a bundle run on one host.
type Report struct {
	Host     string
	Steps    []StepResult
	Duration time.Duration
}

// Ran lists the steps that ran (not skipped).
func (r Report) Ran() []string {
	var out []string
	for _, s := range r.Steps {
		if s.Status != StepSkipped {
			out = append(out, s.Name)
		}
	}
	return out
}

// StepError is a failed step: host, step, exit code and its last output lines.
type StepError struct {
	Host     string
	Step     string
	ExitCode int
	Tail     []string
}

func (e *StepError) Error() string {
	return fmt.Sprintf("host %s: bundle step %s failed (exit code %d); its last output lines:\n  %s\nfix the cause and re-run: finished steps are skipped",
		e.Host, e.Step, e.ExitCode, strings.Join(e.Tail, "\n  "))
}

// ExecOptions configure Execute.
type ExecOptions struct {
	// PackagesAddr is the local address of the packages endpoint (host:port); it is exposed on
	// the node through a reverse SSH tunnel.
	PackagesAddr string
	Log          *slog.Logger
	// Secrets are replaced by <redacted> in every line of output dhctl logs or reports (kubeadm
	// init prints the join command with the bootstrap token).
	Secrets []string
	// Timeout bounds the whole run (upload, every step); 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds a bundle run: packages of a few hundred MB, image pulls and kubeadm's own
// waits fit well within it on a slow link.
const DefaultTimeout = 30 * time.Minute

// Execute ships the bundle as one tar stream and runs it as root, streaming its steps to the log.
func Execute(ctx context.Context, c *ssh.Client, b *Bundle, o ExecOptions) (Report, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	rep := Report{Host: c.Host()}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if o.PackagesAddr == "" {
		return rep, errors.New("node: no packages endpoint address")
	}
	fwd, err := c.RemoteForward(ctx, "127.0.0.1:0", o.PackagesAddr)
	if err != nil {
		return rep, fmt.Errorf("host %s: exposing the packages endpoint on the node: %w", c.Host(), err)
	}
	defer fwd.Close()
	if _, err := c.Run(ctx, ssh.Command{Cmd: "rm -rf " + RemoteDir + " && install -d -m 0700 " + RemoteDir, Sudo: true, LogAs: "prepare the bundle directory"}); err != nil {
		return rep, fmt.Errorf("host %s: preparing %s: %w", c.Host(), RemoteDir, err)
	}
	if err := c.Upload(ctx, ssh.Upload{RemoteDir: RemoteDir, Files: b.Files(), Sudo: true}); err != nil {
		return rep, fmt.Errorf("host %s: uploading the bundle: %w", c.Host(), err)
	}
	p := &markerParser{log: log.With("host", c.Host()), secrets: o.Secrets}
	cmd := fmt.Sprintf("DHCTL_PACKAGES_URL=http://%s bash %s/bashible.sh", fwd.Addr(), RemoteDir)
	_, runErr := c.Run(ctx, ssh.Command{Cmd: cmd, Sudo: true, Stdout: p, LogAs: "node bundle"})
	p.flush()
	rep.Steps = p.steps
	rep.Duration = time.Since(start)
	if p.failed != nil {
		p.failed.Host = c.Host()
		return rep, p.failed
	}
	if runErr != nil {
		if ctx.Err() != nil && parent.Err() == nil {
			return rep, fmt.Errorf("host %s: the node bundle did not finish within %v (step %s was running); see /var/lib/dhctl/bashible/log/ on the node", c.Host(), timeout, p.step)
		}
		return rep, fmt.Errorf("host %s: running the bundle: %w", c.Host(), runErr)
	}
	if !p.done {
		return rep, fmt.Errorf("host %s: the bundle stopped before its end without naming a failed step", c.Host())
	}
	if err := fwd.Err(); err != nil {
		log.Warn("packages tunnel", "host", c.Host(), "err", err)
	}
	return rep, nil
}

// markerParser reads the driver's "::step" lines; everything else is the steps' output.
type markerParser struct {
	log     *slog.Logger
	secrets []string
	mu      sync.Mutex
	buf     bytes.Buffer
	step    string
	steps   []StepResult
	failed  *StepError
	done    bool
}

func (p *markerParser) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for {
		line, err := p.buf.ReadString('\n')
		if err == io.EOF {
			p.buf.WriteString(line)
			return len(b), nil
		}
		p.line(strings.TrimRight(line, "\n"))
	}
}

func (p *markerParser) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rest := p.buf.String(); rest != "" {
		p.buf.Reset()
		p.line(rest)
	}
}

func (p *markerParser) line(l string) {
	for _, s := range p.secrets {
		if s != "" {
			l = strings.ReplaceAll(l, s, "<redacted>")
		}
	}
	switch {
	case strings.HasPrefix(l, "::step "):
		f := strings.Fields(l)
		if len(f) < 3 {
			return
		}
		name, what := f[1], f[2]
		ms := func(i int) time.Duration {
			if len(f) > i {
				n, _ := strconv.Atoi(f[i])
				return time.Duration(n) * time.Millisecond
			}
			return 0
		}
		switch what {
		case "skipped":
			p.steps = append(p.steps, StepResult{Name: name, Status: StepSkipped})
			p.log.Info("step unchanged, skipped", "step", name)
		case "started":
			p.step = name
			p.log.Info("step started", "step", name)
		case "done":
			p.steps = append(p.steps, StepResult{Name: name, Status: StepRan, Duration: ms(3)})
			p.log.Info("step done", "step", name, "took", ms(3))
		case "failed":
			code, _ := strconv.Atoi(f[3])
			p.steps = append(p.steps, StepResult{Name: name, Status: StepFailed, Duration: ms(4)})
			p.failed = &StepError{Step: name, ExitCode: code}
			p.log.Error("step failed", "step", name, "exit", code)
		}
	case strings.HasPrefix(l, "::tail "):
		if p.failed != nil {
			p.failed.Tail = append(p.failed.Tail, strings.TrimPrefix(l, "::tail "))
		}
	case l == "::bundle done":
		p.done = true
	default:
		p.log.Debug(l, "step", p.step)
	}
}
