package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/operations/abort"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// dhctl bootstrap-phase abort: remove what a failed bootstrap made.

const forceFinishedFlag = "force-abort-finished-cluster"

func newAbortPhaseCommand(opts *globalOptions) *cobra.Command {
	var force bool
	var concurrency int
	var engine engineFlags
	cmd := &cobra.Command{
		Use:   "abort",
		Short: "Remove what a failed bootstrap made on its hosts, so they can be bootstrapped again",
		Long: `Clean every host a node bundle ran on (recorded in the cluster's state dir) and every
--ssh-host: kubeadm reset, kubelet and containerd stopped and disabled with the units and binaries
dhctl installed, the CNI's configuration, interfaces (cni0, flannel.1) and iptables rules,
/etc/kubernetes, /var/lib/etcd, /var/lib/kubelet, containerd's state and the bundle's own files.
All hosts are cleaned at once; a host that cannot be reached is reported and the others are
cleaned all the same. Afterwards the state dir forgets the cluster (checkpoints, join data,
kubeconfig), so a new bootstrap starts clean. Running it twice is harmless.

For a cloud cluster (give its --config), the machines the bootstrap made are destroyed with
their infrastructure instead, the last made first, then the base infrastructure.

It asks for confirmation unless --yes-i-am-sane-and-i-understand-what-i-am-doing is given, and
refuses a cluster whose bootstrap finished unless --` + forceFinishedFlag + ` is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openSession(cmd, opts, false)
			if err != nil {
				return err
			}
			defer s.Close()
			o := abort.Options{
				Name: s.Name(), State: s.ClusterState(), Candi: candi.FS, Hosts: s.Hosts(), Clients: s.Clients,
				Force: force, ForceFlag: forceFinishedFlag, Concurrency: concurrency, Out: cmd.OutOrStdout(), Log: s.Log(),
			}
			if s.Config() != nil {
				// A cloud cluster's machines go with its infrastructure.
				if o.Provider, o.Infra, err = engine.cloud(cmd.Context(), s, s.Config()); err != nil {
					return err
				}
				o.Cluster = s.Config()
			}
			if !opts.Sane {
				o.Confirm = func(cluster string, hosts []string) error {
					return confirmAbort(cmd.InOrStdin(), cmd.ErrOrStderr(), cluster, hosts)
				}
			}
			return abort.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&force, forceFinishedFlag, false, "abort even a cluster whose bootstrap finished (destroys a cluster that may be in use)")
	cmd.Flags().IntVar(&concurrency, "concurrency", ssh.DefaultConcurrency, "how many hosts are cleaned at once")
	engine.add(cmd)
	return cmd
}

// confirmAbort shows what is about to be removed and wants "yes" typed on in.
func confirmAbort(in io.Reader, out io.Writer, cluster string, hosts []string) error {
	fmt.Fprintf(out, "abort will REMOVE cluster %s from these hosts (kubeadm reset, kubelet, containerd with its images, CNI, /etc/kubernetes, /var/lib/etcd, /var/lib/kubelet):\n", cluster)
	for _, h := range hosts {
		fmt.Fprintf(out, "  %s\n", h)
	}
	return confirm(in, out, "", "abort", "nothing was changed")
}
