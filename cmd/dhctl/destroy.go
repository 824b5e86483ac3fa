package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/operations/destroy"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

func newDestroyCommand(opts *globalOptions) *cobra.Command {
	var skipResources bool
	var concurrency int
	var engine engineFlags
	f := destroy.Options{}
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Destroy the cluster and everything dhctl made for it",
		Long: `Remove the cluster, in order:
  1. through the API server (reached over SSH to the first master; skipped with --skip-resources):
     take the converge lock and keep it, delete the platform controller, PodDisruptionBudgets,
     Services of type LoadBalancer and PersistentVolumeClaims, waiting for each to go;
  2. a cloud cluster (give its --config): destroy every machine's infrastructure, the last made
     first, then the base infrastructure; a static cluster: clean every machine over SSH (those
     the state dir recorded, those given with --ssh-host, and the cluster's nodes), as abort does;
  3. forget the cluster's local state.
It shows what it will remove and asks for "yes" unless --yes-i-am-sane-and-i-understand-what-i-am-doing
is given. A machine that cannot be cleaned is named and the command fails; the others are cleaned.
Interrupted anywhere, run it again; with the API server gone it works from the state dir; a
destroyed cluster is reported as such (exit 0).

Without the bootstrap's state dir (another machine, a lost laptop), give --ssh-host the first
master (and a cloud cluster's --config): before removing anything, destroy reads from the cluster
into the state dir it starts the join data, the cluster's UUID and a cloud cluster's
infrastructure states (d8-cluster-terraform-state, d8-node-terraform-state-*). A cloud cluster's
states that the state dir lacks (a machine a converge made elsewhere) are taken the same way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openSession(cmd, opts, false)
			if err != nil {
				return err
			}
			defer s.Close()
			o := f
			o.Name, o.State, o.Candi, o.Hosts, o.Clients = s.Name(), s.ClusterState(), candi.FS, s.Hosts(), s.Clients
			o.Concurrency, o.Out, o.Log = concurrency, cmd.OutOrStdout(), s.Log()
			if s.Config() != nil {
				if o.Provider, o.Infra, err = engine.cloud(cmd.Context(), s, s.Config()); err != nil {
					return err
				}
				o.Cluster = s.Config()
			}
			if !skipResources {
				if err := restoreForDestroy(cmd.Context(), s, o.Provider, o.Cluster, o.Out); err != nil {
					return err
				}
			}
			if steps, err := s.ClusterState().TerraformSteps(); err != nil {
				return err
			} else if len(steps) > 0 && o.Provider == nil {
				return usageError(fmt.Errorf("the state dir %s holds infrastructure states (%s): this is a cloud cluster; give its --config so dhctl can destroy them",
					s.ClusterState().Path(), strings.Join(steps, ", ")))
			}
			if !skipResources {
				o.Kube = apiThroughFirstMaster(s)
			}
			if !opts.Sane {
				o.Confirm = func(what []string) error { return confirmDestroy(cmd.InOrStdin(), cmd.ErrOrStderr(), s.Name(), what) }
			}
			return destroy.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&skipResources, "skip-resources", false, "do not contact the API server (its objects are not deleted; the machines are)")
	cmd.Flags().DurationVar(&f.ResourcesTimeout, "resources-timeout", destroy.DefaultResourcesTimeout, "how long to wait for each kind of in-cluster object to go")
	cmd.Flags().IntVar(&concurrency, "concurrency", ssh.DefaultConcurrency, "how many machines are cleaned at once")
	engine.add(cmd)
	return cmd
}

// restoreForDestroy makes the state dir know what the cluster keeps before anything is removed,
// so that a destroy interrupted later finishes from the state dir alone:
//   - a state dir without join data (another machine, a lost laptop) is filled from the first
//     --ssh-host when dhctl ran kubeadm there: the join data (the API server, the cluster's
//     objects and nodes are then reached), the cluster's UUID;
//   - a cloud cluster's infrastructure states the state dir lacks (all of them from another
//     machine; a machine made by a converge run elsewhere) are taken from the cluster's copies,
//     with their machines. A local state is never replaced.
//
// A first --ssh-host where kubeadm never ran (or that was cleaned) holds no cluster: the given
// machines are then cleaned, as before. A cloud cluster is never destroyed without its
// infrastructure states: without --config, or with the cluster unreadable where the state dir
// knows nothing, it stops before anything changed.
func restoreForDestroy(ctx context.Context, s *session.Session, prov providers.Provider, c *config.Cluster, out io.Writer) error {
	state := s.ClusterState()
	join, err := state.Join()
	if err != nil {
		return err
	}
	if join.MasterIP != "" {
		deleted, _, err := state.ResourcesDeleted()
		if err != nil || prov == nil || deleted {
			return err
		}
		snap, err := clusterSnapshot(ctx, apiThroughFirstMaster(s))
		if err != nil {
			// destroy itself says the API server is down and works from the state dir.
			return nil
		}
		return restoreMachines(prov, c, state, snap, out)
	}
	touched, err := state.TouchedHosts()
	if err != nil {
		return err
	}
	steps, err := state.TerraformSteps()
	if err != nil || len(touched) > 0 || len(steps) > 0 || len(s.Hosts()) == 0 {
		// The state dir knows machines (a bootstrap that stopped before its first master
		// finished, an abort or destroy under way): destroy works from it, as it always did.
		return err
	}
	host := s.Hosts()[0]
	conn, err := s.Connect(ctx, host)
	if err != nil {
		if prov != nil {
			return fmt.Errorf("the state dir %s does not know cluster %s, and %s, where its infrastructure states would be read, is unreachable: %w", state.Path(), s.Name(), host, err)
		}
		fmt.Fprintf(out, "%s is unreachable (%v): the cluster is not read from it; the --ssh-host machines are cleaned\n", host, err)
		return nil
	}
	defer conn.Close()
	ran, err := nodebundle.RanKubeadm(ctx, conn)
	if err != nil {
		return err
	}
	if !ran {
		fmt.Fprintf(out, "%s holds no cluster (dhctl never ran kubeadm there, or it was cleaned): the --ssh-host machines are cleaned\n", host)
		return nil
	}
	if join, err = nodebundle.RestoreJoin(ctx, conn, host); err != nil {
		return err
	}
	snap, err := clusterSnapshot(ctx, func(ctx context.Context) (*kube.Client, error) { return apiThrough(ctx, s, host) })
	if err != nil {
		if prov != nil {
			return fmt.Errorf("reading the cluster's infrastructure states: %w; with the API server down, destroy needs the bootstrap's state dir", err)
		}
		fmt.Fprintf(out, "the cluster's state is not readable through %s (%v): the --ssh-host machines are cleaned\n", host, err)
		return nil
	}
	cloud := len(snap.BaseInfraState) > 0 || len(snap.Nodes) > 0
	if cloud && prov == nil {
		return usageError(fmt.Errorf("cluster %s keeps infrastructure states: it is a cloud cluster; give its --config so dhctl can destroy its infrastructure", s.Name()))
	}
	if snap.UUID != "" {
		if err := state.AdoptClusterUUID(snap.UUID); err != nil {
			return usageError(err)
		}
	}
	if err := state.SaveJoin(join); err != nil {
		return err
	}
	fmt.Fprintf(out, "the state dir had no join data: read from the first master %s into %s\n", join.MasterIP, state.Path())
	if prov == nil {
		return nil
	}
	return restoreMachines(prov, c, state, snap, out)
}

// apiThroughFirstMaster opens the API server through an SSH tunnel to the first master the
// state dir recorded. The returned client owns the SSH connection.
func apiThroughFirstMaster(s *session.Session) func(ctx context.Context) (*kube.Client, error) {
	return func(ctx context.Context) (*kube.Client, error) {
		j, err := s.ClusterState().Join()
		if err != nil {
			return nil, err
		}
		host := j.MasterHost
		if host == "" {
			host = j.MasterIP
		}
		if host == "" {
			return nil, errors.New("the state dir records no first master")
		}
		return apiThrough(ctx, s, host)
	}
}

// apiThrough opens the API server through an SSH tunnel to a master; the client owns the SSH
// connection.
func apiThrough(ctx context.Context, s *session.Session, host string) (*kube.Client, error) {
	c, err := s.Connect(ctx, host)
	if err != nil {
		return nil, err
	}
	k, err := kube.ConnectSSH(ctx, kube.SSHOptions{SSH: c, Log: s.Log()})
	if err != nil {
		c.Close()
		return nil, err
	}
	return k.WithCloser(c.Close), nil
}

// confirmDestroy shows what is about to be removed and wants "yes" typed on in.
func confirmDestroy(in io.Reader, out io.Writer, cluster string, what []string) error {
	fmt.Fprintf(out, "destroy will REMOVE cluster %s:\n", cluster)
	for _, w := range what {
		fmt.Fprintf(out, "  - %s\n", w)
	}
	return confirm(in, out, "", "destroy", "nothing was changed")
}
