package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// envPrefix is prepended to a flag's upper-cased name (dashes become underscores) to find its
// environment variable: --ssh-host reads DHCTL_SSH_HOST.
const envPrefix = "DHCTL_"

// invocation is what run needs to know after cobra returns.
type invocation struct {
	// started is set once cobra gets as far as running a command: an error before that (unknown
	// command or flag) is a usage error.
	started bool
	opts    globalOptions
}

// newRootCommand builds the command tree; inv is filled in as the command line is executed.
func newRootCommand(io streams, lookupEnv func(string) (string, bool)) (root *cobra.Command, inv *invocation) {
	inv = &invocation{}
	opts := &inv.opts
	opts.lookupEnv = lookupEnv
	root = &cobra.Command{
		Use:   "dhctl",
		Short: "Bootstrap, converge and destroy vanilla Kubernetes clusters",
		Long: `dhctl turns a few YAML documents (ClusterConfiguration, InitConfiguration,
StaticClusterConfiguration or a provider's ClusterConfiguration, SSH settings, NodeGroups and
extra resources) into a running Kubernetes cluster on bare metal or a cloud, keeps its node groups
converged and tears it down again.

Every flag can also be set through the environment: --ssh-host is DHCTL_SSH_HOST, and list flags
take comma-separated values there.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			inv.started = true
			if err := applyEnv(cmd.Flags(), lookupEnv); err != nil {
				return err
			}
			if _, err := logging.ParseFormat(opts.LogFormat); err != nil {
				return usageError(fmt.Errorf("--log-format: %w", err))
			}
			return expandHome(cmd.Flags(), lookupEnv)
		},
	}
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	addGlobalFlags(root.PersistentFlags(), opts)

	root.AddCommand(
		newVersionCommand(),
		newBootstrapCommand(opts),
		newBootstrapPhaseGroup(opts),
		newConvergeCommand(opts),
		newDestroyCommand(opts),
		newLockCommand(opts),
		newConfigCommand(opts),
		newMirrorCommand(opts),
		newTestCommand(opts),
	)
	// Arguments cobra rejects (unknown command, wrong count) are usage errors too.
	for _, c := range allCommands(root) {
		if c.Args != nil {
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError(err)
				}
				return nil
			}
		}
	}
	return root, inv
}

func addGlobalFlags(f *pflag.FlagSet, o *globalOptions) {
	f.StringArrayVar(&o.ConfigPaths, "config", nil, "configuration file with YAML documents (repeatable; documents may be Go templates over environment variables)")
	f.StringArrayVar(&o.ResourcePaths, "resources", nil, "file with Kubernetes resources to create after the cluster is up (repeatable)")
	f.StringArrayVar(&o.ConnectionConfigPaths, "connection-config", nil, "file with SSHConfig and SSHHost documents (repeatable)")
	f.StringVar(&o.StateDir, "state-dir", "", "directory for local state (checkpoints, pinned host keys, logs); default $XDG_STATE_HOME/dhctl")
	f.StringVar(&o.ClusterName, "cluster-name", "", "name of the cluster's sub-directory in --state-dir (default: the cloud prefix, or static-<first ssh host>)")
	f.StringVar(&o.LogFormat, "log-format", "text", "output format: text (phase tree for people) or json (one object per event)")
	f.BoolVar(&o.Sane, "yes-i-am-sane-and-i-understand-what-i-am-doing", false, "do not ask for confirmation before destructive actions")

	f.StringArrayVar(&o.SSH.Hosts, "ssh-host", nil, "SSH host to connect to, [user@]host[:port] (IPv6 in brackets; repeatable); the first is the first master")
	f.StringVar(&o.SSH.User, "ssh-user", "", "SSH user (default: the current user)")
	f.Var(&o.SSH.Port, "ssh-port", "SSH port, 1-65535 (default: SSHConfig's sshPort, else 22)")
	f.StringArrayVar(&o.SSH.AgentPrivateKeys, "ssh-agent-private-keys", nil, "private key file to authenticate with (repeatable); a running ssh-agent is used as well")
	f.StringVar(&o.SSH.BastionHost, "ssh-bastion-host", "", "jump host to reach the machines through: [user@]host[:port]")
	f.DurationVar(&o.SSH.ConnectTimeout, "ssh-connect-timeout", 0, "bound of each SSH connection attempt: TCP connect, banner, key exchange, login (default "+ssh.DefaultConnectTimeout.String()+")")
	f.Var(&o.SSH.BastionPort, "ssh-bastion-port", "jump host SSH port, 1-65535 (default: SSHConfig's sshBastionPort, else 22)")
	f.StringVar(&o.SSH.BastionUser, "ssh-bastion-user", "", "jump host SSH user (default: --ssh-user)")
	f.StringVar(&o.SSH.KnownHostsFile, "ssh-known-hosts", "", "known_hosts file honoured for hosts it lists (default ~/.ssh/known_hosts; \"none\" to ignore it); other hosts are pinned on first use in the state dir")
	f.BoolVar(&o.SSH.InsecureIgnoreHostKeys, "ssh-insecure-ignore-host-keys", false, "do not verify SSH host keys (unsafe: for throwaway labs only)")
}

// applyEnv sets every flag the command line left unset from DHCTL_<NAME>, so a flag given
// explicitly always wins over the environment.
func applyEnv(flags *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	var problems []string
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := envName(f.Name)
		value, ok := lookupEnv(name)
		if !ok {
			return
		}
		values := []string{value}
		if isListFlag(f) {
			values = splitList(value)
		}
		for _, v := range values {
			if err := f.Value.Set(v); err != nil {
				problems = append(problems, fmt.Sprintf("%s=%q: %v", name, value, err))
				return
			}
		}
		f.Changed = true
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[fromEnvAnnotation] = []string{name}
	})
	if len(problems) > 0 {
		return usageError(fmt.Errorf("invalid environment: %s", strings.Join(problems, "; ")))
	}
	return nil
}

// fromEnvAnnotation marks a flag set from the environment, with the variable's name: a command
// that reports where a setting came from says so.
const fromEnvAnnotation = "dhctl/from-env"

// flagOrigin names where a set flag's value came from: the command line, or the variable.
func flagOrigin(f *pflag.Flag) string {
	if v := f.Annotations[fromEnvAnnotation]; len(v) > 0 {
		return v[0]
	}
	return "--" + f.Name
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func isListFlag(f *pflag.Flag) bool {
	switch f.Value.Type() {
	case "stringArray", "stringSlice", "intSlice":
		return true
	}
	return false
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, child := range c.Commands() {
		out = append(out, allCommands(child)...)
	}
	return out
}

// newGroupCommand makes a command that only holds sub-commands: without one it prints help, and a
// misspelled one is a usage error (cobra alone would print help and exit 0).
func newGroupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return usageError(fmt.Errorf("unknown command %q for %q; see %q", args[0], cmd.CommandPath(), cmd.CommandPath()+" --help"))
		},
	}
}

// pathFlags name files or directories: a leading "~/" in them means the home directory, as
// in a shell (the shell does not expand it after "--flag=" or in DHCTL_* variables).
func pathFlags() []string {
	return []string{"config", "resources", "connection-config", "state-dir", "ssh-agent-private-keys",
		"ssh-known-hosts", "kubeconfig", "version-map-override", "post-bootstrap-script-path", "terraform-binary", "terraform-plugins-dir"}
}

// expandHome expands "~/" at the start of every value of the path flags that are set.
func expandHome(flags *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	home, _ := lookupEnv("HOME")
	for _, name := range pathFlags() {
		f := flags.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		expand := func(v string) (string, error) {
			if v != "~" && !strings.HasPrefix(v, "~/") {
				return v, nil
			}
			if home == "" {
				return "", usageError(fmt.Errorf("--%s %s: HOME is not set, so ~ cannot be expanded: give the full path", name, v))
			}
			return home + strings.TrimPrefix(v, "~"), nil
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			vals := sv.GetSlice()
			for i, v := range vals {
				e, err := expand(v)
				if err != nil {
					return err
				}
				vals[i] = e
			}
			if err := sv.Replace(vals); err != nil {
				return err
			}
			continue
		}
		e, err := expand(f.Value.String())
		if err != nil {
			return err
		}
		if err := f.Value.Set(e); err != nil {
			return err
		}
	}
	return nil
}
