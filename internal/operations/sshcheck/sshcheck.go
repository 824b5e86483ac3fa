// Package sshcheck is the operation behind `dhctl test ssh-connection`: it connects to every
// host (through the bastion when one is given), verifies or pins its host key, and reports per
// host the OS, kernel, how sudo works and whether the host key was newly pinned.
package sshcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Options are plain values from flags or configuration (no dependency on the config package).
type Options struct {
	// Hosts to check: "host" or "host:port" (IPv6 as "[addr]:port"). Required.
	Hosts []string
	// User is the login user on every host. Required.
	User string
	// Port is used for hosts given without a port (22 when 0).
	Port int

	// PrivateKeys are key files (OpenSSH or PEM) with their passphrases ("" for none).
	PrivateKeys []ssh.KeyFile
	// AgentSocket is an ssh-agent socket to use (callers usually pass $SSH_AUTH_SOCK; "" = none).
	AgentSocket string
	// Password enables password authentication.
	Password string
	// PassphrasePrompt, when set, asks for passphrases of encrypted keys given without one.
	PassphrasePrompt func(keyPath string) ([]byte, error)

	// Bastion (jump host); BastionPort defaults to 22 and BastionUser to User.
	BastionHost string
	BastionPort int
	BastionUser string

	// SudoPassword is fed to sudo when it asks (never logged).
	SudoPassword string

	// HostKeyChecking: "tofu" (default: trust on first use, pin, refuse changes), "strict"
	// (only hosts already known) or "off" (accept anything, with a warning).
	HostKeyChecking string
	// StateDir is the cluster's state dir; pinned host keys live in StateDir/known_hosts.
	// Required unless HostKeyChecking is "off".
	StateDir string
	// UserKnownHostsFile is honoured when it lists a host; "" means ~/.ssh/known_hosts,
	// "none" disables it.
	UserKnownHostsFile string

	// Concurrency bounds how many hosts are checked at once (ssh.DefaultConcurrency when 0).
	Concurrency int
	// ConnectTimeout bounds each connection attempt (ssh.DefaultConnectTimeout when 0).
	ConnectTimeout time.Duration
	// HostTimeout bounds all the work on one host (2 minutes when 0).
	HostTimeout time.Duration

	// Logger receives progress and remote output; nil discards.
	Logger *slog.Logger
	// DialContext replaces the TCP dialer (tests dial inside a network namespace); nil = default.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

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

// Run checks every host and writes a table to out. It fails (after reporting every host) when
// any host could not be checked; the error lists each failed host and why.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	_, err := Check(ctx, opts, out)
	return err
}

// Check is Run that also returns the per-host reports (in the order of opts.Hosts; zero for
// failed hosts).
func Check(ctx context.Context, opts Options, out io.Writer) ([]HostReport, error) {
	clients, err := newClients(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	return CheckClients(ctx, clients, FanoutOptions{Concurrency: opts.Concurrency, HostTimeout: opts.HostTimeout}, out)
}

// FanoutOptions bound the parallel work: Concurrency hosts at once (ssh.DefaultConcurrency when
// 0), HostTimeout for all the work on one host (2 minutes when 0).
type FanoutOptions struct {
	Concurrency int
	HostTimeout time.Duration
}

// CheckClients is Check for clients the caller built (dhctl's session builds them from flags and
// SSHConfig documents). It does not close them.
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

func newClients(opts Options) ([]*ssh.Client, error) {
	if len(opts.Hosts) == 0 {
		return nil, errors.New("ssh connection check: no hosts given; pass at least one --ssh-host")
	}
	policy, err := hostKeyPolicy(opts)
	if err != nil {
		return nil, err
	}
	var clients []*ssh.Client
	for _, h := range opts.Hosts {
		host, port, err := ssh.SplitHostPort(h, opts.Port)
		if err != nil {
			return nil, err
		}
		c, err := ssh.New(ssh.Config{
			Host: host,
			Port: port,
			User: opts.User,
			Auth: ssh.Auth{
				Keys:             opts.PrivateKeys,
				AgentSocket:      opts.AgentSocket,
				Password:         opts.Password,
				PassphrasePrompt: opts.PassphrasePrompt,
			},
			Bastion:        ssh.Endpoint{Host: opts.BastionHost, Port: opts.BastionPort, User: opts.BastionUser},
			HostKeys:       policy,
			SudoPassword:   opts.SudoPassword,
			Logger:         opts.Logger,
			ConnectTimeout: opts.ConnectTimeout,
			DialContext:    opts.DialContext,
		})
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	return clients, nil
}

func hostKeyPolicy(opts Options) (ssh.HostKeyPolicy, error) {
	p := ssh.HostKeyPolicy{StateDir: opts.StateDir}
	switch opts.HostKeyChecking {
	case "", "tofu":
		p.Mode = ssh.HostKeysTrustOnFirstUse
	case "strict":
		p.Mode = ssh.HostKeysStrict
	case "off":
		p.Mode = ssh.HostKeysInsecureIgnore
	default:
		return p, fmt.Errorf("host key checking %q: want tofu, strict or off", opts.HostKeyChecking)
	}
	switch opts.UserKnownHostsFile {
	case "none":
	case "":
		if home, err := os.UserHomeDir(); err == nil {
			p.UserKnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
		}
	default:
		p.UserKnownHostsFile = opts.UserKnownHostsFile
	}
	if p.StateDir != "" {
		p.Pins = ssh.NewPinStore(p.StateDir) // one store for all hosts: first-contact pins are batched
	}
	if p.Mode != ssh.HostKeysInsecureIgnore && p.StateDir == "" {
		return p, errors.New("ssh connection check: no state dir to pin host keys in; give the cluster's state dir or turn host key checking off")
	}
	return p, nil
}
