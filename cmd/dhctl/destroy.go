package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/operations/destroy"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
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
destroyed cluster is reported as such (exit 0).`,
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
}

// confirmDestroy shows what is about to be removed and wants "yes" typed on in.
func confirmDestroy(in io.Reader, out io.Writer, cluster string, what []string) error {
	fmt.Fprintf(out, "destroy will REMOVE cluster %s:\n", cluster)
	for _, w := range what {
		fmt.Fprintf(out, "  - %s\n", w)
	}
	return confirm(in, out, "", "destroy", "nothing was changed")
}
