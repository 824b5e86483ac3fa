// Package session is the plumbing every operation on a cluster shares: the cluster's state
// directory (locked for the run), the logger with its always-written debug file and the redactor
// fed with every secret of the configuration, the SSH settings resolved from flags and documents,
// and the phase runner wired to checkpoints in the state dir. Operations receive a *Session and
// never reach for flags, globals or the environment themselves.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// Options are what a command hands over: plain values from flags, plus the loaded configuration.
type Options struct {
	// StateRoot is --state-dir; "" means state.DefaultRoot().
	StateRoot string
	// ClusterName names the cluster's sub-directory; "" derives it (see ClusterName).
	ClusterName string
	// Command names the run in the debug log file's name, e.g. "bootstrap".
	Command string

	LogFormat logging.Format
	Out       io.Writer
	Verbose   bool

	// Config is the loaded configuration; nil for commands that need none.
	Config *config.Cluster
	// LookupEnv reads the environment (XDG_STATE_HOME, HOME); nil means an empty environment.
	LookupEnv func(string) (string, bool)
	SSH       SSHOptions

	// Now is the clock (tests pin it); nil means time.Now.
	Now func() time.Time
}

// SSHOptions are the SSH flags. SSHConfig and SSHHost documents fill what the flags leave empty.
type SSHOptions struct {
	Hosts          []string
	User           string
	Port           int // 0 = from SSHConfig, else 22
	KeyFiles       []string
	AgentSocket    string // usually $SSH_AUTH_SOCK
	BastionHost    string
	BastionPort    int
	BastionUser    string
	IgnoreHostKeys bool
	KnownHostsFile string // "" = ~/.ssh/known_hosts (honoured when it lists a host), "none" = ignore it
	// ConnectTimeout bounds each connection attempt (--ssh-connect-timeout); 0 = ssh's default.
	ConnectTimeout   time.Duration
	PassphrasePrompt func(keyPath string) ([]byte, error)
	// DialContext replaces the TCP dialer (tests dial inside a network namespace).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Session is one locked run of an operation on one cluster.
type Session struct {
	name   string
	dir    *state.Dir
	local  *clusterstate.Local
	log    *logging.Logger
	config *config.Cluster
	ssh    resolvedSSH
	pins   *ssh.PinStore
}

type resolvedSSH struct {
	hosts          []string
	base           ssh.Config // everything but Host
	ignoreHostKeys bool
}

// Open locks the cluster's state dir and starts the logger. The caller must Close it.
func Open(ctx context.Context, opts Options) (_ *Session, err error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	resolved, err := resolveSSH(opts.SSH, opts.Config, lookup)
	if err != nil {
		return nil, err
	}
	name := opts.ClusterName
	if name == "" {
		name = ClusterName(opts.Config, resolved.hosts)
	}
	if err := state.ValidateClusterName(name); err != nil {
		return nil, exitcode.Usage(fmt.Errorf("--cluster-name: %w", err))
	}
	root := opts.StateRoot
	if root == "" {
		if root, err = state.DefaultRoot(lookup); err != nil {
			return nil, err
		}
	}
	dir, err := state.Open(ctx, root, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			dir.Close()
		}
	}()
	logFile, err := dir.LogFile(opts.Command, now())
	if err != nil {
		return nil, err
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	logger, err := logging.New(logging.Options{
		Format:    opts.LogFormat,
		Out:       out,
		DebugFile: logFile,
		Redactor:  logging.NewRedactor(secrets(opts.Config)...),
		Verbose:   opts.Verbose,
	})
	if err != nil {
		return nil, err
	}
	s := &Session{name: name, dir: dir, local: clusterstate.NewLocal(dir), log: logger, config: opts.Config, ssh: resolved}
	if !resolved.ignoreHostKeys {
		s.pins = ssh.NewPinStore(dir.Path())
	} else {
		logger.Slog().Warn("SSH host key checking is OFF (--ssh-insecure-ignore-host-keys): a man in the middle would go unnoticed")
	}
	logger.Slog().Debug("session opened", "cluster", name, "state_dir", dir.Path(), "debug_log", logFile)
	return s, nil
}

// Name is the cluster's name in the state root.
func (s *Session) Name() string { return s.name }

// State is the cluster's locked state dir.
func (s *Session) State() *state.Dir { return s.dir }

// ClusterState is the cluster's local state, through its typed accessors.
func (s *Session) ClusterState() *clusterstate.Local { return s.local }

// Log is the run's logger (redacting, also written to the debug file).
func (s *Session) Log() *slog.Logger { return s.log.Slog() }

// Logger is the logging.Logger behind Log, for phase output.
func (s *Session) Logger() *logging.Logger { return s.log }

// Config is the loaded configuration, nil for commands that need none.
func (s *Session) Config() *config.Cluster { return s.config }

// Hosts are the SSH hosts of the run, in order: the first is the first master.
func (s *Session) Hosts() []string { return append([]string(nil), s.ssh.hosts...) }

// SSHConfig is the SSH configuration for one host. Host may carry its own port ("host:port").
func (s *Session) SSHConfig(host string) (ssh.Config, error) {
	cfg := s.ssh.base
	ep, err := ssh.ParseEndpoint(host)
	if err != nil {
		return ssh.Config{}, exitcode.Usage(fmt.Errorf("ssh host: %w", err))
	}
	cfg.Host = ep.Host
	if ep.Port != 0 {
		cfg.Port = ep.Port
	}
	if ep.User != "" {
		cfg.User = ep.User
	}
	cfg.Logger = s.log.Slog()
	if s.ssh.ignoreHostKeys {
		cfg.HostKeys = ssh.HostKeyPolicy{Mode: ssh.HostKeysInsecureIgnore}
	} else {
		cfg.HostKeys.StateDir = s.dir.Path()
		cfg.HostKeys.Pins = s.pins
	}
	return cfg, nil
}

// Connect opens an SSH client to host and connects it, bounded by the client's connect timeout
// and its reconnect attempts.
func (s *Session) Connect(ctx context.Context, host string) (*ssh.Client, error) {
	cfg, err := s.SSHConfig(host)
	if err != nil {
		return nil, err
	}
	return ssh.Open(ctx, cfg)
}

// Clients builds one client per host, not yet connected (ssh.Fanout connects them in parallel).
// A host or SSH setting that cannot work is a usage error naming the host. On error the clients
// built so far are closed; otherwise the caller closes them (CloseClients).
func (s *Session) Clients(hosts []string) ([]*ssh.Client, error) {
	clients := make([]*ssh.Client, 0, len(hosts))
	for _, h := range hosts {
		cfg, err := s.SSHConfig(h)
		if err == nil {
			var c *ssh.Client
			if c, err = ssh.New(cfg); err == nil {
				clients = append(clients, c)
				continue
			}
			err = exitcode.Usage(fmt.Errorf("host %s: %w", h, err))
		}
		CloseClients(clients)
		return nil, err
	}
	return clients, nil
}

// CloseClients closes every client.
func CloseClients(clients []*ssh.Client) {
	for _, c := range clients {
		c.Close()
	}
}

// PhaseOptions are the runner flags of a command.
type PhaseOptions struct {
	Skip, Only []string
	DryRun     bool
}

// RunPhases runs phases with checkpoints in the state dir and the phase tree on the logger.
func (s *Session) RunPhases(ctx context.Context, phases []phase.Phase, opts PhaseOptions) (phase.Result, error) {
	return phase.Run(ctx, phases, phase.Options{
		Skip:        opts.Skip,
		Only:        opts.Only,
		DryRun:      opts.DryRun,
		Checkpoints: phase.NewDirCheckpoints(s.dir),
		Events:      phase.LogSink(s.log),
	})
}

// Close flushes the logger and releases the state dir's lock.
func (s *Session) Close() error {
	return errors.Join(s.log.Close(), s.dir.Close())
}

// ClusterName derives a state sub-directory name when --cluster-name is not given: the cloud
// prefix of a cloud cluster, else "static-" and the first SSH host, so two clusters never share
// checkpoints by accident. The name is unique per address: an IPv6 address is written in its
// canonical form with "_" for ":" (so "::1" and "1::" differ), an explicit port follows after a
// "-"; a login user does not change the machine, so it is left out.
func ClusterName(cfg *config.Cluster, hosts []string) string {
	if cfg != nil && cfg.ClusterConfiguration.Cloud != nil && cfg.ClusterConfiguration.Cloud.Prefix != "" {
		return cfg.ClusterConfiguration.Cloud.Prefix
	}
	if len(hosts) == 0 {
		return "default"
	}
	ep, err := ssh.ParseEndpoint(hosts[0])
	if err != nil {
		return "static-" + strings.Trim(unsafeNameChars.ReplaceAllString(hosts[0], "-"), "-.")
	}
	host := ep.Host
	if a, err := netip.ParseAddr(host); err == nil {
		host = strings.ReplaceAll(a.String(), ":", "_")
	}
	name := "static-" + unsafeNameChars.ReplaceAllString(host, "-")
	if ep.Port != 0 {
		name += "-" + strconv.Itoa(ep.Port)
	}
	return name
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// resolveSSH merges flags (which win) with the SSHConfig and SSHHost documents.
func resolveSSH(o SSHOptions, cfg *config.Cluster, lookupEnv func(string) (string, bool)) (resolvedSSH, error) {
	var doc config.SSHConfig
	var docHosts []string
	if cfg != nil {
		if cfg.SSHConfig != nil {
			doc = *cfg.SSHConfig
		}
		for _, h := range cfg.SSHHosts {
			docHosts = append(docHosts, h.Host)
		}
	}
	r := resolvedSSH{hosts: o.Hosts, ignoreHostKeys: o.IgnoreHostKeys}
	if len(r.hosts) == 0 {
		r.hosts = docHosts
	}
	// Every host is checked before anything (the state dir) is created.
	for _, h := range r.hosts {
		if _, err := ssh.ParseEndpoint(h); err != nil {
			return r, exitcode.Usage(fmt.Errorf("ssh host %q: %w", h, err))
		}
	}
	b := &r.base
	b.User = firstNonEmpty(o.User, doc.SSHUser)
	b.Port = firstNonZero(o.Port, doc.SSHPort, ssh.DefaultPort)
	b.ConnectTimeout = o.ConnectTimeout
	b.Bastion = ssh.Endpoint{
		Port: firstNonZero(o.BastionPort, doc.SSHBastionPort),
		User: firstNonEmpty(o.BastionUser, doc.SSHBastionUser),
	}
	// The bastion may be given as [user@]host[:port] too; explicit flags or fields win.
	if bh := firstNonEmpty(o.BastionHost, doc.SSHBastionHost); bh != "" {
		ep, err := ssh.ParseEndpoint(bh)
		if err != nil {
			return r, exitcode.Usage(fmt.Errorf("ssh bastion host: %w", err))
		}
		b.Bastion.Host = ep.Host
		b.Bastion.Port = firstNonZero(b.Bastion.Port, ep.Port)
		b.Bastion.User = firstNonEmpty(b.Bastion.User, ep.User)
	}
	b.SudoPassword = doc.SudoPassword
	b.DialContext = o.DialContext
	b.HostKeys = ssh.HostKeyPolicy{Mode: ssh.HostKeysTrustOnFirstUse, UserKnownHostsFile: userKnownHosts(o.KnownHostsFile, lookupEnv)}
	for _, path := range o.KeyFiles {
		b.Auth.Keys = append(b.Auth.Keys, ssh.KeyFile{Path: path})
	}
	for i, k := range doc.SSHAgentPrivateKeys {
		b.Auth.Keys = append(b.Auth.Keys, ssh.KeyFile{
			Path:       fmt.Sprintf("SSHConfig sshAgentPrivateKeys[%d]", i),
			Data:       []byte(k.Key),
			Passphrase: k.Passphrase,
		})
	}
	// One cache for the run: each key is read and decrypted (or its passphrase asked) once, not
	// once per host.
	b.Auth.KeyCache = ssh.NewKeyCache()
	b.Auth.AgentSocket = o.AgentSocket
	b.Auth.PassphrasePrompt = o.PassphrasePrompt
	return r, nil
}

// secrets are the values of the configuration that must never reach a log.
func secrets(cfg *config.Cluster) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	if c := cfg.SSHConfig; c != nil {
		out = append(out, c.SudoPassword)
		for _, k := range c.SSHAgentPrivateKeys {
			out = append(out, k.Passphrase)
		}
	}
	if ic := cfg.InitConfiguration; ic != nil {
		out = append(out, ic.Deckhouse.RegistryDockerCfg)
	}
	// Every other field a schema marks secret (a cloud provider's password, ...).
	out = append(out, cfg.SecretValues()...)
	var nonEmpty []string
	for _, s := range out {
		if s != "" {
			nonEmpty = append(nonEmpty, s)
		}
	}
	return nonEmpty
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstNonZero(vs ...int) int {
	for _, v := range vs {
		if v != 0 {
			return v
		}
	}
	return 0
}

func userKnownHosts(flag string, lookupEnv func(string) (string, bool)) string {
	switch flag {
	case "none":
		return ""
	case "":
		if home, ok := lookupEnv("HOME"); ok && home != "" {
			return filepath.Join(home, ".ssh", "known_hosts")
		}
		return ""
	}
	return flag
}
