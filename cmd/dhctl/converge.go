package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
	"github.com/dhctl-dev/dhctl/internal/operations/converge"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

func newConvergeCommand(opts *globalOptions) *cobra.Command {
	var kubeconfig string
	var node nodeFlags
	var engine engineFlags
	o := converge.Options{}
	static := converge.MachineOptions{}
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
and carries the plan out; interrupted anywhere, run it again.

Static node groups: a NodeGroup with spec.staticInstances takes, of the StaticInstance documents
of --config its labelSelector matches (by name), the first count. A selected machine without a
node is joined (over SSH with its SSHCredentials, with a fresh join token when the bootstrap's
expired); a node of the group on a StaticInstance no longer selected is removed: cordoned,
drained (bounded by --drain-timeout), its machine cleaned as abort does, its Node deleted. A
node on no StaticInstance (joined with --worker-host) is never removed. The master group works
the same way, one master at a time: a master joins the control plane only while etcd and the
API server are healthy (kubeadm's certificates uploaded again when they expired), and leaves
etcd before it is drained and cleaned, refused while any etcd member is unhealthy; the first
master (every node's control-plane endpoint) is never removed. Removing a node is
destructive: it is shown and needs "yes" typed, or --yes-i-am-sane-and-i-understand-what-i-am-doing;
otherwise converge changes nothing.

Without the bootstrap's state dir (another machine, a lost laptop), give --ssh-host the first
master: converge reads the join data from it (the control-plane endpoint, the certificate key
kubeadm init ran with, the CA's hash; a join token is made at the first join), takes the
cluster's UUID, and for a cloud cluster the infrastructure states the cluster keeps
(d8-cluster-terraform-state, d8-node-terraform-state-*) with the machines they describe, into
the state dir it starts. A state dir of another cluster is refused.

Without --config, the configuration is the one the cluster keeps (its ClusterConfiguration,
provider or static configuration and InitConfiguration, as the bootstrap or the last converge
with --config stored them; edit them with dhctl config edit), the NodeGroups and the
StaticInstances the cluster has. A converge with --config keeps it in the cluster; one that
changes what the cluster was made with (clusterType, subnets, domain, version) is refused.

Cloud clusters (their --config, the engine as for bootstrap): every infrastructure step is
planned, and each is reported as Deckhouse's terraform check does: InSync, OutOfSync (changes in
place, e.g. an instanceClass's memory) or DestructiveOutOfSync (a machine replaced, e.g. a new
template). Changes in place are applied and the new state kept in the cluster. A node group's
new replicas are made through the engine node by node, then joined as static machines are
(masters one at a time); a machine to replace (DestructiveOutOfSync) is removed as a node is
(a master leaves etcd first; cordon, drain, clean), made again and joined again, one at a time;
a replica no longer wanted is removed, then its machine destroyed with the settings its group
had when it was made. Replacing and removing follow the rule above; the first master is never
replaced or removed. A machine made by a run interrupted before its join is joined by the next.`,
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
					if err := desiredFrom(c, &run); err != nil {
						return err
					}
				}
				run.MachinesUnavailable = "with --kubeconfig there is no state dir and no SSH: run converge with the bootstrap's --state-dir and --cluster-name to add, replace or remove nodes"
				run.AllowDestructive = opts.Sane
				run.Confirm = func(what []string) error { return confirmConverge(cmd.InOrStdin(), cmd.ErrOrStderr(), run.Name, what) }
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
			join, err := s.ClusterState().Join()
			if err != nil {
				return err
			}
			if join.MasterIP == "" {
				if join, err = restoreJoin(cmd.Context(), s, run.Out); err != nil {
					return err
				}
			}
			run.FirstMasterIP = join.MasterIP
			run.AllowDestructive = opts.Sane
			run.Confirm = func(what []string) error { return confirmConverge(cmd.InOrStdin(), cmd.ErrOrStderr(), s.Name(), what) }
			snap, err := clusterSnapshot(cmd.Context(), run.Kube)
			if err != nil {
				return err
			}
			if snap.UUID != "" {
				if err := s.ClusterState().AdoptClusterUUID(snap.UUID); err != nil {
					return usageError(err)
				}
			}
			c := s.Config()
			if c != nil {
				if err := desiredFrom(c, &run); err != nil {
					return err
				}
			} else if c, err = storedConfig(cmd.Context(), s, snap); err != nil {
				return err
			}
			if prov, runner, err := engine.cloud(cmd.Context(), s, c); err != nil {
				return err
			} else if prov != nil {
				run.Cloud = &converge.CloudOptions{Provider: prov, Infra: runner, Cluster: c, State: s.ClusterState()}
				if err := restoreMachines(prov, c, s.ClusterState(), snap, run.Out); err != nil {
					return err
				}
			}
			if run.Machines, run.MachinesUnavailable, err = machineOptions(cmd, s, c, &node, static); err != nil {
				return err
			}
			if run.Machines != nil {
				// Before the state dir is closed: the packages endpoint writes to its cache.
				defer run.Machines.Nodes.Close()
			}
			_, err = converge.Run(cmd.Context(), run)
			return err
		},
	}
	cmd.Flags().BoolVar(&o.Check, "check", false, "only show the plan: exit 0 when in sync, 4 when the cluster differs from its configuration")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "reach the API server with this kubeconfig instead of through the first master")
	cmd.Flags().DurationVar(&static.DrainTimeout, "drain-timeout", nodegroup.DefaultDrainTimeout, "how long a node being removed may take to drain")
	cmd.Flags().DurationVar(&static.ReadyTimeout, "node-ready-timeout", converge.DefaultReadyTimeout, "how long a joined node may take to be Ready")
	node.addVersionMap(cmd)
	engine.add(cmd)
	cmd.Flags().StringVar(&node.PackagesSource, "packages-source", "registry", "where node packages come from: registry (imagesRepo/packages, by digest) or upstream (the version map's URLs)")
	return cmd
}

// desiredFrom puts what configuration c wants in o: its NodeGroups (as install makes them) and
// its StaticInstances with their SSHCredentials (none given: nil, and Static groups' nodes are
// left as they are).
func desiredFrom(c *config.Cluster, o *converge.Options) error {
	o.Config = c
	var err error
	if o.Groups, err = install.NodeGroups(c); err != nil {
		return err
	}
	if o.Instances, o.Credentials, err = nodegroup.StaticMachines(c.Resources); err != nil {
		return usageError(err)
	}
	if o.StaticObjects, err = install.StaticMachineObjects(c); err != nil {
		return err
	}
	if len(o.Instances) == 0 {
		o.Instances = nil
	}
	return nil
}

// machineOptions is what joining and removing machines of the cluster configured by c needs,
// or why this run cannot.
func machineOptions(cmd *cobra.Command, s *session.Session, c *config.Cluster, node *nodeFlags, o converge.MachineOptions) (*converge.MachineOptions, string, error) {
	if c.InitConfiguration == nil {
		return nil, "neither --config nor the cluster has an InitConfiguration (a cluster bootstrapped by an older dhctl keeps none): give the cluster's --config; a joining node needs its registry", nil
	}
	if node.PackagesSource != "registry" && node.PackagesSource != "upstream" {
		return nil, "", usageError(fmt.Errorf("--packages-source %q: want registry or upstream", node.PackagesSource))
	}
	vm, err := node.versionMap(cmd.Context(), cmd.ErrOrStderr())
	if err != nil {
		return nil, "", err
	}
	nodes, err := nodebundle.NewNodes(nodebundle.NodesOptions{Candi: candi.FS, Cluster: c, VersionMap: vm, State: s.ClusterState(),
		UpstreamPackages: node.PackagesSource == "upstream", Log: s.Log()})
	if err != nil {
		return nil, "", err
	}
	o.Nodes, o.State, o.Candi = nodes, s.ClusterState(), candi.FS
	o.FirstMaster = func(ctx context.Context) (*ssh.Client, string, error) {
		j, err := s.ClusterState().Join()
		if err != nil {
			return nil, "", err
		}
		if j.MasterIP == "" {
			return nil, "", errors.New("the state dir records no first master")
		}
		c, err := s.Connect(ctx, cmp.Or(j.MasterHost, j.MasterIP))
		return c, j.MasterIP, err
	}
	o.ConnectMachine = s.Connect
	o.Connect = func(ctx context.Context, in nodegroup.StaticInstance, creds nodegroup.SSHCredentials) (*ssh.Client, error) {
		cfg, err := s.SSHConfig(in.Address)
		if err != nil {
			return nil, err
		}
		cfg.User, cfg.SudoPassword = creds.User, creds.SudoPassword
		if creds.Port != 0 {
			cfg.Port = creds.Port
		}
		cfg.Auth = ssh.Auth{Keys: []ssh.KeyFile{{Path: "the key of SSHCredentials " + creds.Name, Data: creds.PrivateKey}}}
		return ssh.Open(ctx, cfg)
	}
	return &o, "", nil
}

// confirmConverge shows the plan's destructive changes and wants "yes" typed on in.
func confirmConverge(in io.Reader, out io.Writer, cluster string, what []string) error {
	fmt.Fprintf(out, "converge of cluster %s will make DESTRUCTIVE changes:\n", cluster)
	for _, w := range what {
		fmt.Fprintf(out, "  - %s\n", w)
	}
	return confirm(in, out, "", "converge", "nothing was changed")
}

// clusterSnapshot reads the state the cluster keeps.
func clusterSnapshot(ctx context.Context, open func(context.Context) (*kube.Client, error)) (*clusterstate.Snapshot, error) {
	k, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("reaching the API server: %w", err)
	}
	defer k.Close()
	return clusterstate.Read(ctx, k.Typed(), k.Host())
}

// restoreJoin makes the join data of a state dir that has none (converge run on another machine
// than the bootstrap's) from the first master, given with --ssh-host: the cluster's own truth.
func restoreJoin(ctx context.Context, s *session.Session, out io.Writer) (clusterstate.Join, error) {
	hosts := s.Hosts()
	if len(hosts) == 0 {
		return clusterstate.Join{}, usageError(fmt.Errorf("the state dir %s records no bootstrapped cluster %q: give --ssh-host the cluster's first master (converge then takes what it needs from the cluster), or the --cluster-name and --state-dir the bootstrap used, or reach the cluster with --kubeconfig", s.ClusterState().Path(), s.Name()))
	}
	c, err := s.Connect(ctx, hosts[0])
	if err != nil {
		return clusterstate.Join{}, err
	}
	defer c.Close()
	join, err := nodebundle.RestoreJoin(ctx, c, hosts[0])
	if err != nil {
		return clusterstate.Join{}, err
	}
	if err := s.ClusterState().SaveJoin(join); err != nil {
		return clusterstate.Join{}, err
	}
	via := ""
	if hosts[0] != join.MasterIP {
		via = " (" + hosts[0] + ")"
	}
	fmt.Fprintf(out, "the state dir had no join data: read from the first master %s%s into %s\n", join.MasterIP, via, s.ClusterState().Path())
	return join, nil
}

// restoreMachines fills the state dir with the infrastructure states the cluster keeps that it
// lacks, and the records of their machines.
func restoreMachines(prov providers.Provider, c *config.Cluster, state *clusterstate.Local, snap *clusterstate.Snapshot, out io.Writer) error {
	uuid, err := state.ClusterUUID()
	if err != nil {
		return err
	}
	restored, err := providers.Steps{Provider: prov, Cluster: c, UUID: uuid}.Restore(state, snap)
	if err != nil {
		return err
	}
	if len(restored) > 0 {
		fmt.Fprintf(out, "infrastructure states taken from the cluster: %s\n", strings.Join(restored, ", "))
	}
	return nil
}

// storedConfig is the configuration the cluster keeps (its cluster, provider, static and init
// configuration documents), loaded with --config's schemas and rules: converge's configuration
// when no --config is given, as Deckhouse's converge reads it from the cluster. The documents
// hold secrets (the registry's and the cloud's credentials): they pass through a 0600 file in
// the state dir, removed at once.
func storedConfig(ctx context.Context, s *session.Session, snap *clusterstate.Snapshot) (*config.Cluster, error) {
	dir, err := os.MkdirTemp(s.ClusterState().Path(), "stored-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, snap.ConfigDocuments(), 0o600); err != nil {
		return nil, err
	}
	c, err := config.Load(ctx, config.LoadOptions{ConfigPaths: []string{path}})
	if err != nil {
		return nil, fmt.Errorf("the configuration the cluster keeps does not load (fix it with dhctl config edit, or give --config): %w", err)
	}
	return c, nil
}
