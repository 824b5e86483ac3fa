package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/preflight"
	"github.com/dhctl-dev/dhctl/internal/session"
)

// The preflight phase (issue #7): named, skippable checks reported all at once.

// preflightFlags are the flags of the preflight checks, shared by `bootstrap-phase preflight`
// and `bootstrap` (add them with add, read them with options).
type preflightFlags struct {
	Skip      []string
	MasterMin map[string]string
	WorkerMin map[string]string
}

func (f *preflightFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.Skip, "preflight-skip", nil,
		"preflight checks not to run (repeatable or comma-separated): "+strings.Join(preflight.SkippableNames(), ", "))
	cmd.Flags().StringToStringVar(&f.MasterMin, "preflight-master-min", nil,
		"minimums of a master, overriding "+preflight.DefaultMinimums(preflight.RoleMaster).String())
	cmd.Flags().StringToStringVar(&f.WorkerMin, "preflight-worker-min", nil,
		"minimums of a worker, overriding "+preflight.DefaultMinimums(preflight.RoleWorker).String())
}

// settings validates the flags: a wrong check name or minimum is a usage error.
func (f *preflightFlags) settings() (skip []string, mins map[preflight.Role]preflight.Minimums, err error) {
	if err := preflight.ValidateSkip(f.Skip); err != nil {
		return nil, nil, usageError(err)
	}
	mins = map[preflight.Role]preflight.Minimums{}
	for _, r := range []struct {
		role preflight.Role
		kv   map[string]string
	}{{preflight.RoleMaster, f.MasterMin}, {preflight.RoleWorker, f.WorkerMin}} {
		m, err := preflight.ParseMinimums(preflight.DefaultMinimums(r.role), r.kv)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--preflight-%s-min %w", r.role, err))
		}
		mins[r.role] = m
	}
	return f.Skip, mins, nil
}

// runPreflight checks the session's hosts (the first is the first master; the others have the
// given roles, master when not listed), prints the report to out and fails when a check failed.
func runPreflight(ctx context.Context, s *session.Session, f *preflightFlags, roles map[string]preflight.Role, out io.Writer) error {
	skip, mins, err := f.settings()
	if err != nil {
		return err
	}
	inputs, err := preflight.InputsFrom(s.Config())
	if err != nil {
		return usageError(err)
	}
	hosts := s.Hosts()
	if len(hosts) == 0 {
		return usageError(errors.New("no hosts to check: pass --ssh-host (repeatable; the first is the first master) or SSHHost documents with --connection-config"))
	}
	clients, err := s.Clients(hosts)
	if err != nil {
		return err
	}
	defer session.CloseClients(clients)
	targets := make([]preflight.Host, len(clients))
	for i, c := range clients {
		role, found := roles[hosts[i]]
		if !found || i == 0 {
			role = preflight.RoleMaster
		}
		targets[i] = preflight.Host{Client: c, Role: role}
	}
	report, err := preflight.Run(ctx, preflight.Options{
		Hosts:    targets,
		Inputs:   inputs,
		Minimums: mins,
		Skip:     skip,
		Log:      s.Log(),
	})
	if report != nil {
		report.Write(out)
	}
	return err
}

func newPreflightPhaseCommand(opts *globalOptions) *cobra.Command {
	var f preflightFlags
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Run the preflight checks against the machines",
		Long: `Check, without changing anything, that the machines (--ssh-host, or SSHHost documents; the
first is the first master, every host is checked as a master) can become the cluster of --config:
  ssh               SSH reachable, login works (cannot be skipped)
  sudo              sudo works for the login user
  os                OS and architecture supported (Debian 11+, Ubuntu 20.04+, RHEL-likes 8+; x86_64)
  cpu, memory, disk the role's minimums (see --preflight-master-min, --preflight-worker-min)
  ports             6443, 2379-2381, 10250, 10256, 10257, 10259 free (workers: 10250, 10256)
  time-drift        the host's clock within 1 s of this machine's (fails beyond 10 s)
  hostname          valid node name, unique among the hosts, resolvable on the host
  internal-network  an address inside StaticClusterConfiguration internalNetworkCIDRs
  cidr-overlap      podSubnetCIDR and serviceSubnetCIDR overlap no network of the host
  leftovers         no /etc/kubernetes files, etcd data or running kubelet (prints how to clean)
  registry          imagesRepo answers from the first master and accepts registryDockerCfg
Every check runs and one table reports them all; any failed check fails the command (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := f.settings(); err != nil {
				return err // before opening anything
			}
			s, err := openSession(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			defer s.Close()
			return runPreflight(cmd.Context(), s, &f, nil, cmd.OutOrStdout())
		},
	}
	f.add(cmd)
	return cmd
}
