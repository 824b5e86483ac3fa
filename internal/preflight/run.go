package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Host is one machine to check and the role it will have.
type Host struct {
	Client *ssh.Client
	Role   inventory.Role
}

// Inputs are the parts of the configuration the checks compare against.
type Inputs struct {
	// InternalNetworkCIDRs are StaticClusterConfiguration.internalNetworkCIDRs (empty: no check).
	InternalNetworkCIDRs []netip.Prefix
	// ClusterRanges are the pod and Service ranges (ClusterConfiguration).
	ClusterRanges []ClusterRange
	// Registry is the registry the nodes pull from; nil when InitConfiguration has none (the
	// registry check then says so and fails: a bootstrap cannot work without it).
	Registry *Registry
}

// InputsFrom reads the inputs from a loaded configuration (nil gives empty inputs).
func InputsFrom(cfg *config.Cluster) (Inputs, error) {
	var in Inputs
	if cfg == nil {
		return in, nil
	}
	if s := cfg.StaticClusterConfiguration; s != nil {
		for i, c := range s.InternalNetworkCIDRs {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return in, fmt.Errorf("StaticClusterConfiguration internalNetworkCIDRs[%d] %q: not a CIDR: %v", i, c, err)
			}
			in.InternalNetworkCIDRs = append(in.InternalNetworkCIDRs, p.Masked())
		}
	}
	for _, r := range []struct{ field, value string }{
		{"ClusterConfiguration.podSubnetCIDR", cfg.ClusterConfiguration.PodSubnetCIDR},
		{"ClusterConfiguration.serviceSubnetCIDR", cfg.ClusterConfiguration.ServiceSubnetCIDR},
	} {
		if r.value == "" {
			continue
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(r.value))
		if err != nil {
			return in, fmt.Errorf("%s %q: not a CIDR: %v", r.field, r.value, err)
		}
		in.ClusterRanges = append(in.ClusterRanges, ClusterRange{Field: r.field, Prefix: p.Masked()})
	}
	if ic := cfg.InitConfiguration; ic != nil && ic.Deckhouse.ImagesRepo != "" {
		nr, err := node.RegistryFrom(ic)
		if err != nil {
			return in, err
		}
		in.Registry = &Registry{Repo: ic.Deckhouse.NodeImagesRepository(), Scheme: nr.Scheme, CA: nr.CA, User: nr.User, Password: nr.Password}
		if p := node.ProxyFrom(cfg.ClusterConfiguration); p != nil {
			in.Registry.Proxy = p.HTTPS
			if nr.Scheme == "http" {
				in.Registry.Proxy = p.HTTP
			}
			in.Registry.NoProxy = strings.Split(p.NoProxy, ",")
		}
	}
	return in, nil
}

// Options are what a preflight run needs.
type Options struct {
	// Hosts to check; the first is the first master (the registry is checked from it).
	Hosts  []Host
	Inputs Inputs
	// Minimums per role; a role missing here gets DefaultMinimums.
	Minimums map[inventory.Role]Minimums
	// Skip names checks not to run (validated with ValidateSkip).
	Skip []string
	// Concurrency bounds how many hosts are checked at once (ssh.DefaultConcurrency when 0).
	Concurrency int
	// HostTimeout bounds all the work on one host (DefaultHostTimeout when 0).
	HostTimeout time.Duration
	// Now is the operator's clock (time.Now when nil).
	Now func() time.Time
	// Log receives progress; nil discards.
	Log *slog.Logger
}

// DefaultHostTimeout bounds the work on one host: connect, sudo, facts, registry.
const DefaultHostTimeout = 2 * time.Minute

// Row is one check's result on one host.
type Row struct {
	Host  string // user@host:port
	Check string
	Result
}

// Report holds every result of a run, host by host, in catalog order.
type Report struct {
	Rows []Row
}

// Failed are the rows with StatusFailed.
func (r *Report) Failed() []Row { return r.with(StatusFailed) }

// Warnings are the rows with StatusWarning.
func (r *Report) Warnings() []Row { return r.with(StatusWarning) }

func (r *Report) with(s Status) []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Status == s {
			out = append(out, row)
		}
	}
	return out
}

// Err is nil when no check failed; otherwise it names every failed check, its host and why.
func (r *Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "preflight: %d check(s) failed (nothing was changed on the machines; fix them, or skip a check with --preflight-skip NAME if you are sure):", len(failed))
	for _, row := range failed {
		fmt.Fprintf(&b, "\n  %s on %s: %s", row.Check, row.Host, row.Message)
	}
	return errors.New(b.String())
}

// Write prints the report as one table and a summary line.
func (r *Report) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCHECK\tRESULT\tDETAILS")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Host, row.Check, row.Status, row.Message)
	}
	tw.Flush()
	counts := map[Status]int{}
	for _, row := range r.Rows {
		counts[row.Status]++
	}
	var parts []string
	for _, s := range []Status{StatusFailed, StatusWarning, StatusOK, StatusSkipped, StatusNotRun} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], strings.ToLower(string(s))))
		}
	}
	fmt.Fprintf(w, "\npreflight: %s\n", strings.Join(parts, ", "))
}

// hostOutcome is what the SSH part of the run learnt about one host.
type hostOutcome struct {
	sshErr   error
	sudo     Result
	facts    *Facts
	factsErr error
	registry *Result
}

// Run checks every host and returns the report; the error is Report.Err (any check failed).
// Nothing on the machines is changed: the facts script only reads, sudo is probed with `true`,
// and the registry is asked over a TCP channel of the SSH connection.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if len(opts.Hosts) == 0 {
		return nil, errors.New("preflight: no hosts to check; pass --ssh-host (the first is the first master) or SSHHost documents")
	}
	if err := ValidateSkip(opts.Skip); err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.HostTimeout
	if timeout <= 0 {
		timeout = DefaultHostTimeout
	}
	skip := map[string]bool{}
	for _, s := range opts.Skip {
		skip[s] = true
	}
	clients := make([]*ssh.Client, len(opts.Hosts))
	for i, h := range opts.Hosts {
		clients[i] = h.Client
	}
	firstMaster := clients[0]
	needFacts := false
	for _, c := range catalog {
		if c.Scope == ScopeHost && c.Name != CheckSSH && c.Name != CheckSudo && !skip[c.Name] {
			needFacts = true
		}
	}
	start := time.Now()
	results := ssh.Fanout(ctx, clients, ssh.FanoutOptions{Concurrency: opts.Concurrency, PerHostTimeout: timeout},
		func(ctx context.Context, c *ssh.Client) (hostOutcome, error) {
			var o hostOutcome
			if err := c.Connect(ctx); err != nil {
				o.sshErr = err
				return o, nil
			}
			if !skip[CheckSudo] {
				o.sudo = evalSudo(c.CheckSudo(ctx))
			}
			if needFacts {
				o.facts, o.factsErr = gatherFacts(ctx, c, o.sudo.Status == StatusOK, now)
			}
			if c == firstMaster && !skip[CheckRegistry] {
				var r Result
				if opts.Inputs.Registry == nil {
					r = fail("no registry configured: InitConfiguration deckhouse.imagesRepo is required (nodes pull every image from it)")
				} else {
					r = ProbeRegistry(ctx, c.DialContext, *opts.Inputs.Registry)
				}
				o.registry = &r
			}
			return o, nil
		})
	log.Debug("preflight: hosts checked", "hosts", len(clients), "duration", time.Since(start))

	// Hostnames across hosts, for uniqueness.
	byName := map[string][]string{}
	for _, r := range results {
		if r.Err == nil && r.Value.facts != nil && r.Value.facts.Hostname != "" {
			byName[r.Value.facts.Hostname] = append(byName[r.Value.facts.Hostname], r.Client.Target())
		}
	}

	report := &Report{}
	defer func() {
		for _, row := range report.Rows {
			log.Debug("preflight check", "host", row.Host, "check", row.Check, "status", string(row.Status), "message", row.Message)
		}
	}()
	for i, r := range results {
		host := r.Client.Target()
		role := opts.Hosts[i].Role
		mins, found := opts.Minimums[role]
		if !found {
			mins = DefaultMinimums(role)
		}
		o := r.Value
		if r.Err != nil { // timeout or cancellation of the whole host
			o = hostOutcome{sshErr: r.Err}
		}
		for _, c := range catalog {
			if c.Scope == ScopeFirstMaster && i != 0 {
				continue
			}
			row := Row{Host: host, Check: c.Name}
			switch {
			case c.Name == CheckSSH:
				row.Result = sshResult(o, role, i == 0)
			case skip[c.Name]:
				row.Result = Result{StatusSkipped, "skipped with --preflight-skip"}
			case o.sshErr != nil:
				row.Result = Result{StatusNotRun, "no SSH connection"}
			case c.Name == CheckSudo:
				row.Result = o.sudo
			case c.Name == CheckRegistry:
				row.Result = *o.registry
			case o.facts == nil:
				row.Result = Result{StatusNotRun, "facts were not gathered (see the ssh row)"}
			default:
				row.Result = evalFact(c.Name, o.facts, role, mins, opts.Inputs, others(byName[o.facts.Hostname], host))
			}
			report.Rows = append(report.Rows, row)
		}
	}
	if ctx.Err() != nil {
		// Checks cut short by the operator are not failures of the machines: say so, and let the
		// interruption (exit 3) through.
		return report, fmt.Errorf("preflight interrupted before every check finished (nothing was changed on the machines): %w: %w", ctx.Err(), context.Cause(ctx))
	}
	return report, report.Err()
}

func sshResult(o hostOutcome, role inventory.Role, first bool) Result {
	if o.sshErr != nil {
		return fail("%v", o.sshErr)
	}
	if o.factsErr != nil {
		return fail("logged in, but the read-only facts script failed: %v", o.factsErr)
	}
	what := string(role)
	if first {
		what = "first master"
	}
	return ok("logged in (%s)", what)
}

func evalSudo(mode ssh.SudoMode, err error) Result {
	if err != nil {
		switch {
		case errors.Is(err, ssh.ErrSudoPasswordRequired):
			return fail("sudo asks for a password and none was given; set sudoPassword in SSHConfig or allow passwordless sudo")
		case errors.Is(err, ssh.ErrSudoPasswordIncorrect):
			return fail("sudo refused the given password; fix sudoPassword in SSHConfig")
		case errors.Is(err, ssh.ErrSudoNotAllowed):
			return fail("the login user may not use sudo; add it to sudoers or log in as root")
		}
		return fail("cannot tell whether sudo works: %v", err)
	}
	return ok("%s", mode)
}

// evalFact runs the pure evaluation of a facts-based check.
func evalFact(name string, f *Facts, role inventory.Role, mins Minimums, in Inputs, sameName []string) Result {
	switch name {
	case CheckOS:
		return EvalOS(f)
	case CheckCPU:
		return EvalCPU(f, role, mins)
	case CheckMemory:
		return EvalMemory(f, role, mins)
	case CheckDisk:
		return EvalDisk(f, role, mins)
	case CheckPorts:
		return EvalPorts(f, role)
	case CheckTimeDrift:
		return EvalTimeDrift(f)
	case CheckHostname:
		return EvalHostname(f, sameName)
	case CheckInternalNetwork:
		return EvalInternalNetwork(f, in.InternalNetworkCIDRs)
	case CheckCIDROverlap:
		return EvalCIDROverlap(f, in.ClusterRanges)
	case CheckLeftovers:
		return EvalLeftovers(f)
	}
	return fail("internal error: no evaluation for check %q", name)
}

func others(hosts []string, self string) []string {
	var out []string
	for _, h := range hosts {
		if h != self {
			out = append(out, h)
		}
	}
	return out
}
