package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/operations/converge"
)

func newConvergeCommand(opts *globalOptions) *cobra.Command {
	var kubeconfig string
	o := converge.Options{}
	cmd := &cobra.Command{
		Use:   "converge",
		Short: "Bring the cluster's node groups to the configured state",
		Long: `Compare the cluster with its configuration and make them agree. The desired state is the
NodeGroup documents of --config when given (applied to the cluster, with the master group's
default when there is no "master" document), else the cluster's own NodeGroups. The truth is
read from the cluster, reached with --kubeconfig or through the first master the state dir
records.

The plan comes first, per node group and per node (JSON with --log-format json): which
NodeGroups are created or updated, which labels, annotations and taints of its group's
nodeTemplate each node gains, changes or loses. A label, annotation or taint the template never
set (an operator's, another controller's) is never touched.

With --check the plan is all: exit 0 when the cluster is in sync, 4 when it differs (for CI and
drift alarms), 1 on failure. Otherwise converge takes the converge lock (Lease
d8-system/d8-converge-lock; a second converge or a destroy meanwhile refuses, naming the holder)
and carries the plan out; interrupted anywhere, run it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := logging.ParseFormat(opts.LogFormat)
			if err != nil {
				return usageError(err)
			}
			run := o
			run.Out = cmd.OutOrStdout()
			run.JSON = format == logging.FormatJSON
			if kubeconfig != "" {
				run.Name = opts.ClusterName
				if len(opts.ConfigPaths) > 0 {
					c, err := loadConfig(cmd, opts, true)
					if err != nil {
						return err
					}
					if run.Groups, err = install.NodeGroups(c); err != nil {
						return err
					}
				}
				run.Kube = func(ctx context.Context) (*kube.Client, error) {
					k, err := kube.FromKubeconfig(kubeconfig)
					if err != nil {
						return nil, usageError(err)
					}
					return k, nil
				}
				_, err := converge.Run(cmd.Context(), run)
				return err
			}
			s, err := openSession(cmd, opts, false)
			if err != nil {
				return err
			}
			defer s.Close()
			run.Name, run.Log, run.Kube = s.Name(), s.Log(), apiThroughFirstMaster(s)
			if c := s.Config(); c != nil {
				if run.Groups, err = install.NodeGroups(c); err != nil {
					return err
				}
			}
			_, err = converge.Run(cmd.Context(), run)
			return err
		},
	}
	cmd.Flags().BoolVar(&o.Check, "check", false, "only show the plan: exit 0 when in sync, 4 when the cluster differs from its configuration")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "reach the API server with this kubeconfig instead of through the first master")
	return cmd
}
