package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/preflight"
)

// preflightChecksHelp explains the checks, for `bootstrap-phase preflight --help`.
const preflightChecksHelp = `

The checks (every one runs, one table reports them all; any failed check fails the command):
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
Masters (--ssh-host) and workers (--worker-host) are checked for their role. Nothing is changed.
Once kubeadm init ran, only machines not yet part of the cluster are checked.`

// preflightFlags are the flags of the preflight checks (the bootstrap's preflight phase; also
// `bootstrap-phase preflight`).
type preflightFlags struct {
	Skip      []string
	MasterMin map[string]string
	WorkerMin map[string]string
}

func (f *preflightFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.Skip, "preflight-skip", nil,
		"preflight checks not to run (repeatable or comma-separated): "+strings.Join(preflight.SkippableNames(), ", "))
	cmd.Flags().StringToStringVar(&f.MasterMin, "preflight-master-min", nil,
		"minimums of a master, overriding "+preflight.DefaultMinimums(inventory.Master).String())
	cmd.Flags().StringToStringVar(&f.WorkerMin, "preflight-worker-min", nil,
		"minimums of a worker, overriding "+preflight.DefaultMinimums(inventory.Worker).String())
}

// settings validates the flags: a wrong check name or minimum is a usage error.
func (f *preflightFlags) settings() (skip []string, mins map[inventory.Role]preflight.Minimums, err error) {
	if err := preflight.ValidateSkip(f.Skip); err != nil {
		return nil, nil, usageError(err)
	}
	mins = map[inventory.Role]preflight.Minimums{}
	for _, r := range []struct {
		role inventory.Role
		kv   map[string]string
	}{{inventory.Master, f.MasterMin}, {inventory.Worker, f.WorkerMin}} {
		m, err := preflight.ParseMinimums(preflight.DefaultMinimums(r.role), r.kv)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--preflight-%s-min %w", r.role, err))
		}
		mins[r.role] = m
	}
	return f.Skip, mins, nil
}
