package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/operations/abort"
	"github.com/dhctl-dev/dhctl/internal/operations/bootstrap"
	"github.com/dhctl-dev/dhctl/internal/preflight"
	"github.com/dhctl-dev/dhctl/internal/session"
)

// dhctl bootstrap (issue #7): the whole operation, resumable.

type bootstrapFlags struct {
	Phases           session.PhaseOptions
	Preflight        preflightFlags
	Node             nodeFlags
	WorkerHosts      []string
	PostBootstrap    string
	CNI              string
	PlatformImage    string
	PlatformTimeout  time.Duration
	ResourcesTimeout time.Duration
	ClusterTimeout   time.Duration
}

func newBootstrapCommand(opts *globalOptions) *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create a cluster: first master, CNI, platform, other nodes and resources",
		Long: `Create a static cluster on machines reachable over SSH, in phases:
  preflight               every check of ` + "`bootstrap-phase preflight`" + ` on every host
  connect                 SSH to every host
  first-master            node bundle and kubeadm init on the first master
  install/...             CNI, NodeGroups, platform controller, cluster state, wait for them
  nodes/masters           the other masters join, one at a time
  nodes/workers           the workers join, in parallel
  create-resources        the --resources documents
  wait-cluster            every node Ready, the API server's /readyz ok
  post-bootstrap-script   --post-bootstrap-script-path, run as root on the first master
then a summary: the admin kubeconfig's path (in the state dir), the nodes, each phase's time.

Machines: the --ssh-host flags (or SSHHost documents) are the masters, the first being the first
master; --worker-host (repeatable) adds the workers. A host's node address is its IP (give IPs).

Resume: run the same command again after any interruption (Ctrl-C, kill -9, a lost node or
network). Finished phases whose inputs did not change are skipped, the interrupted one is redone
(the node bundle skips its finished steps; objects are server-side applied), nothing is created
twice. A changed configuration re-runs the phases that depend on what changed; a changed pod or
service subnet, cluster domain or Kubernetes version after kubeadm init is refused.`,
		Example: `  dhctl bootstrap --ssh-user=ubuntu --ssh-agent-private-keys=~/.ssh/id_ed25519 \
    --ssh-host=10.0.0.10 --worker-host=10.0.0.20 --config=config.yml --resources=resources.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBootstrap(cmd, opts, &f)
		},
	}
	addPhaseFlags(cmd.Flags(), &f.Phases)
	f.Preflight.add(cmd)
	f.Node.addVersionMap(cmd)
	cmd.Flags().StringVar(&f.Node.PackagesSource, "packages-source", "registry", "where node packages come from: registry (imagesRepo/packages, by digest) or upstream (the version map's URLs)")
	cmd.Flags().StringArrayVar(&f.WorkerHosts, "worker-host", nil, "a machine that becomes a worker (repeatable; same SSH settings as --ssh-host)")
	cmd.Flags().StringVar(&f.PostBootstrap, "post-bootstrap-script-path", "", "a script run as root on the first master once the cluster is ready")
	cmd.Flags().StringVar(&f.CNI, "cni", "", "the CNI to install (default: the enabled ModuleConfig cni-<name>, else flannel)")
	cmd.Flags().StringVar(&f.PlatformImage, "platform-image", "", "platform controller image (see bootstrap-phase install-deckhouse --help)")
	cmd.Flags().DurationVar(&f.PlatformTimeout, "deckhouse-timeout", install.DefaultPlatformTimeout, "how long to wait for the CNI, CoreDNS and the platform controller")
	cmd.Flags().DurationVar(&f.ResourcesTimeout, "resources-timeout", install.DefaultResourcesTimeout, "how long to wait for the resources")
	cmd.Flags().DurationVar(&f.ClusterTimeout, "cluster-timeout", bootstrap.DefaultClusterTimeout, "how long to wait for every node Ready")
	return cmd
}

func runBootstrap(cmd *cobra.Command, opts *globalOptions, f *bootstrapFlags) error {
	start := time.Now()
	skip, mins, err := f.Preflight.settings()
	if err != nil {
		return err
	}
	if f.Node.PackagesSource != "registry" && f.Node.PackagesSource != "upstream" {
		return usageError(fmt.Errorf("--packages-source %q: want registry or upstream", f.Node.PackagesSource))
	}
	var script []byte
	if f.PostBootstrap != "" {
		if script, err = os.ReadFile(f.PostBootstrap); err != nil {
			return usageError(fmt.Errorf("--post-bootstrap-script-path: %w", err))
		}
	}
	// The session knows every machine (preflight checks them all); the roles stay ours.
	o := *opts
	if len(f.WorkerHosts) > 0 && len(o.SSH.Hosts) == 0 {
		return usageError(fmt.Errorf("--worker-host needs the masters as --ssh-host flags too (the first --ssh-host is the first master)"))
	}
	o.SSH.Hosts = slices.Clone(o.SSH.Hosts)
	for _, w := range f.WorkerHosts {
		if slices.Contains(o.SSH.Hosts, w) {
			return usageError(fmt.Errorf("--worker-host %s is also an --ssh-host (a master): list each machine once", w))
		}
		o.SSH.Hosts = append(o.SSH.Hosts, w)
	}
	s, err := openSession(cmd, &o, os.LookupEnv, true)
	if err != nil {
		return err
	}
	defer s.Close()
	vm, err := f.Node.versionMap(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	vmDigest := ""
	if f.Node.VersionMapFile != "" {
		data, _ := os.ReadFile(f.Node.VersionMapFile)
		sum := sha256.Sum256(data)
		vmDigest = hex.EncodeToString(sum[:])
	}
	var masters, workers []bootstrap.Host
	roles := map[string]preflight.Role{}
	for _, h := range s.Hosts() {
		host := bootstrap.Host{SSH: h, IP: hostIP(h)}
		if slices.Contains(f.WorkerHosts, h) {
			workers = append(workers, host)
			roles[h] = preflight.RoleWorker
		} else {
			masters = append(masters, host)
			roles[h] = preflight.RoleMaster
		}
	}
	if len(masters) == 0 {
		return usageError(fmt.Errorf("no machines: give the first master with --ssh-host (or SSHHost documents with --connection-config)"))
	}
	b, err := bootstrap.New(bootstrap.Options{
		Candi:            candi.FS,
		Cluster:          s.Config(),
		VersionMap:       vm,
		VersionMapDigest: vmDigest,
		State:            s.State(),
		Log:              s.Log(),
		Connect:          s.Connect,
		Masters:          masters,
		Workers:          workers,
		Preflight: func(ctx context.Context) error {
			return runPreflight(ctx, s, &f.Preflight, roles, cmd.OutOrStdout())
		},
		PreflightInputs:         map[string]any{"skip": skip, "minimums": fmt.Sprint(mins)},
		UpstreamPackages:        f.Node.PackagesSource == "upstream",
		CNI:                     f.CNI,
		PlatformImage:           f.PlatformImage,
		PlatformTimeout:         f.PlatformTimeout,
		ResourcesTimeout:        f.ResourcesTimeout,
		ClusterTimeout:          f.ClusterTimeout,
		PostBootstrapScript:     f.PostBootstrap,
		PostBootstrapScriptData: script,
	})
	if err != nil {
		return usageError(err)
	}
	defer b.Close()
	res, err := s.RunPhases(cmd.Context(), b.Phases(), f.Phases)
	if err != nil {
		return err
	}
	// A full run (not a dry run, not a hand-picked subset) finished the cluster: from now on abort
	// refuses to tear it down without --force-abort-finished-cluster.
	if !f.Phases.DryRun && len(f.Phases.Only) == 0 {
		if err := abort.MarkCompleted(s.State(), time.Now()); err != nil {
			return err
		}
	}
	var nodes []bootstrap.NodeInfo
	if !f.Phases.DryRun {
		if nodes, err = b.Nodes(cmd.Context()); err != nil {
			s.Log().Warn("could not list the nodes for the summary", "error", err)
		}
	}
	bootstrap.WriteSummary(cmd.OutOrStdout(), b.KubeconfigPath(), nodes, res, time.Since(start))
	return nil
}

// hostIP is the node address of an SSH host: its host part (bootstrap.New rejects a name).
func hostIP(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
