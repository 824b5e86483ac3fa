package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/session"
)

// Commands of the install phase (issue #6): CNI, platform controller, cluster state, resources.

// installFlags are the flags of the install commands.
type installFlags struct {
	Kubeconfig       string
	PlatformTimeout  time.Duration
	ResourcesTimeout time.Duration
	CNI              string
	PlatformImage    string
	Phases           session.PhaseOptions
}

func (f *installFlags) addAPI(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Kubeconfig, "kubeconfig", "",
		"reach the API server directly with this kubeconfig instead of through SSH to the first master (--ssh-host)")
	addPhaseFlags(cmd.Flags(), &f.Phases)
}

// connector opens the cluster's API: --kubeconfig, else an SSH tunnel to the first --ssh-host.
// It returns a cleanup closing what it opened.
func (f *installFlags) connector(s *session.Session) (func(ctx context.Context) (*kube.Client, error), func()) {
	var closers []func() error
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	connect := func(ctx context.Context) (*kube.Client, error) {
		if f.Kubeconfig != "" {
			c, err := kube.FromKubeconfig(f.Kubeconfig)
			if err != nil {
				return nil, usageError(err)
			}
			return c, nil
		}
		hosts := s.Hosts()
		if len(hosts) == 0 {
			return nil, usageError(errors.New("no way to reach the API server: give the first master with --ssh-host (dhctl tunnels to it over SSH) or a --kubeconfig"))
		}
		sshClient, err := s.Connect(ctx, hosts[0])
		if err != nil {
			return nil, err
		}
		closers = append(closers, sshClient.Close)
		c, err := kube.ConnectSSH(ctx, kube.SSHOptions{SSH: sshClient, Log: s.Log()})
		if err != nil {
			return nil, err
		}
		closers = append(closers, c.Close)
		return c, nil
	}
	return connect, cleanup
}

func newInstallDeckhousePhaseCommand(opts *globalOptions) *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install-deckhouse",
		Short: "Install the CNI, the NodeGroups, the platform controller and the cluster state",
		Long: `Install, on a cluster whose first control-plane node is up, in phases:
  install/cni             the CNI (flannel by default; a ModuleConfig cni-<name> or --cni selects another)
  install/node-groups     the NodeGroup CRD, NodeGroup master and the configured NodeGroups
  install/platform        d8-system, the controller's ServiceAccount and ClusterRoleBinding, the
                          deckhouse-registry Secret, the ModuleConfig CRD and ModuleConfigs, and
                          the Deployment deckhouse
  install/cluster-state   kube-system/d8-cluster-configuration, d8-static- or
                          d8-provider-cluster-configuration, the d8-cluster-uuid ConfigMap
  install/wait-platform   wait (bounded by --deckhouse-timeout) for the CNI, CoreDNS and the
                          platform controller to be ready; on timeout, say what is not and why
Every object is server-side applied with the field manager "dhctl": running it again changes nothing.
The API server is reached through an SSH tunnel to the first --ssh-host (its admin kubeconfig is
read there), or directly with --kubeconfig.

The platform image is <imagesRepo>/platform-controller:v0.1.0 (dhctl's registry layout) unless
--platform-image gives a full reference, or ":<tag>" for Deckhouse's layout <imagesRepo>:<tag>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openSession(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			defer s.Close()
			uuid, err := install.ClusterUUID(s.State())
			if err != nil {
				return err
			}
			connect, cleanup := f.connector(s)
			defer cleanup()
			in, err := install.New(install.Options{
				Connect:          connect,
				Cluster:          s.Config(),
				ClusterUUID:      uuid,
				CNI:              f.CNI,
				PlatformImage:    f.PlatformImage,
				PlatformTimeout:  f.PlatformTimeout,
				ResourcesTimeout: f.ResourcesTimeout,
				Log:              s.Log(),
			})
			if err != nil {
				return usageError(err)
			}
			_, err = s.RunPhases(cmd.Context(), []phase.Phase{in.Group()}, f.Phases)
			return err
		},
	}
	f.addAPI(cmd)
	cmd.Flags().DurationVar(&f.PlatformTimeout, "deckhouse-timeout", install.DefaultPlatformTimeout, "how long to wait for the CNI, CoreDNS and the platform controller to be ready")
	cmd.Flags().StringVar(&f.CNI, "cni", "", "the CNI to install (default: the enabled ModuleConfig cni-<name>, else flannel)")
	cmd.Flags().StringVar(&f.PlatformImage, "platform-image", "", `platform controller image: a full reference, or ":<tag>" for <imagesRepo>:<tag> (default <imagesRepo>/platform-controller:`+install.PlatformControllerTag+`)`)
	return cmd
}

func newCreateResourcesPhaseCommand(opts *globalOptions) *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "create-resources",
		Short: "Create the --resources documents in the cluster",
		Long: `Apply the --resources documents (and kinds dhctl has no schema for from --config) in dependency
order: CRDs, namespaces, RBAC, configuration, workloads, then custom resources. A document whose
kind is not served yet (its CRD comes from another document or a platform module) is retried
until --resources-timeout; then dhctl waits, within the same bound, for the kinds whose readiness
it knows (Deployments, DaemonSets, StatefulSets, Jobs, CRDs) and says what is not ready and why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openSession(cmd, opts, opts.lookupEnv, true)
			if err != nil {
				return err
			}
			defer s.Close()
			connect, cleanup := f.connector(s)
			defer cleanup()
			p := install.NewResourcesPhase(connect, s.Config().Resources, f.ResourcesTimeout, s.Log())
			_, err = s.RunPhases(cmd.Context(), []phase.Phase{p}, f.Phases)
			return err
		},
	}
	f.addAPI(cmd)
	cmd.Flags().DurationVar(&f.ResourcesTimeout, "resources-timeout", install.DefaultResourcesTimeout, "how long to wait for the resources' kinds to be served and for them to be ready")
	return cmd
}
