// Package sshcheck is the operation behind `dhctl test ssh-connection`: it connects to every
// host (through the bastion when one is given), verifies or pins its host key, and reports per
// host the OS, kernel, how sudo works and whether the host key was newly pinned. The clients come
// from the session, like every other command's.
package sshcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// HostReport is what was learnt about one host.
type HostReport struct {
	Host        string // host:port
	OS          string
	Kernel      string
	Sudo        ssh.SudoMode
	HostKey     ssh.HostKeyStatus
	BastionKey  ssh.HostKeyStatus
	NewlyPinned bool
}

// FanoutOptions bound the parallel work: Concurrency hosts at once (ssh.DefaultConcurrency when
// 0), HostTimeout for all the work on one host (2 minutes when 0).
type FanoutOptions struct {
	Concurrency int
	HostTimeout time.Duration
}

// CheckClients connects every client (built by the session from flags and SSHConfig documents,
// as for every other command), checks it and writes a table to out. It fails (after reporting
// every host) when any host could not be checked; the error lists each failed host and why. It
// does not close the clients.
func CheckClients(ctx context.Context, clients []*ssh.Client, opts FanoutOptions, out io.Writer) ([]HostReport, error) {
	if len(clients) == 0 {
		return nil, errors.New("ssh connection check: no hosts given; pass at least one --ssh-host or an SSHHost document")
	}
	timeout := opts.HostTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	results := ssh.Fanout(ctx, clients, ssh.FanoutOptions{Concurrency: opts.Concurrency, PerHostTimeout: timeout}, checkHost)

	reports := make([]HostReport, len(results))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRESULT\tOS\tKERNEL\tSUDO\tHOST KEY")
	var failed []error
	for i, r := range results {
		if r.Err != nil {
			failed = append(failed, r.Err)
			fmt.Fprintf(tw, "%s\tFAILED\t-\t-\t-\t-\n", r.Client.Target())
			continue
		}
		reports[i] = r.Value
		fmt.Fprintf(tw, "%s\tok\t%s\t%s\t%s\t%s\n", r.Client.Target(), r.Value.OS, r.Value.Kernel, r.Value.Sudo, describeKey(r.Value.HostKey))
	}
	tw.Flush()
	// Every host goes through its own bastion connection; the first of them pinned the key.
	var bastion ssh.HostKeyStatus
	for _, r := range results {
		if r.Err == nil && r.Value.BastionKey.Fingerprint != "" && (bastion.Fingerprint == "" || r.Value.BastionKey.Source == ssh.HostKeyNewlyPinned) {
			bastion = r.Value.BastionKey
		}
	}
	if bastion.Fingerprint != "" {
		fmt.Fprintf(out, "bastion %s: host key %s\n", bastion.Address, describeKey(bastion))
	}
	if len(failed) > 0 {
		for _, e := range failed {
			fmt.Fprintf(out, "\nerror: %v\n", e)
		}
		return reports, fmt.Errorf("ssh connection check failed for %d of %d hosts: %w", len(failed), len(results), errors.Join(failed...))
	}
	fmt.Fprintf(out, "\nall %d hosts reachable\n", len(results))
	return reports, nil
}

func describeKey(st ssh.HostKeyStatus) string {
	switch st.Source {
	case ssh.HostKeyNewlyPinned:
		return "newly pinned " + st.Fingerprint
	case ssh.HostKeyPinned:
		return "pinned " + st.Fingerprint
	case ssh.HostKeyFromKnownHosts:
		return "known_hosts " + st.Fingerprint
	case ssh.HostKeyUnchecked:
		return "NOT CHECKED " + st.Fingerprint
	}
	return st.Fingerprint
}

func checkHost(ctx context.Context, c *ssh.Client) (HostReport, error) {
	if err := c.Connect(ctx); err != nil {
		return HostReport{}, err
	}
	rep := HostReport{Host: c.Target()}
	info, err := c.Output(ctx, ssh.Command{
		Cmd:   `(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-$ID}") || uname -o; uname -srm`,
		LogAs: "detect OS and kernel",
	})
	if err != nil {
		return rep, err
	}
	lines := strings.SplitN(info, "\n", 2)
	rep.OS = strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		rep.Kernel = strings.TrimSpace(lines[1])
	}
	if rep.Sudo, err = c.CheckSudo(ctx); err != nil {
		return rep, err
	}
	rep.HostKey = c.HostKey()
	rep.BastionKey = c.BastionHostKey()
	rep.NewlyPinned = rep.HostKey.Source == ssh.HostKeyNewlyPinned
	return rep, nil
}
