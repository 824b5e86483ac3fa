package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/operations/bootstrap"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Bounds of the files flags name besides the configuration (read without blocking on a FIFO).
const (
	maxScriptSize     = 1 << 20
	maxVersionMapSize = 4 << 20
)

// dhctl bootstrap and the bootstrap-phase commands bound to parts of its phase tree: one set of
// flags, one function from flags to the operation.

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
	Kubeconfig       string
	Engine           engineFlags
}

func (f *bootstrapFlags) add(cmd *cobra.Command, phases []phase.Phase) {
	addPhaseFlags(cmd, &f.Phases, phases)
	f.Preflight.add(cmd)
	f.Node.addVersionMap(cmd)
	cmd.Flags().StringVar(&f.Node.PackagesSource, "packages-source", "registry", "where node packages come from: registry (imagesRepo/packages, by digest) or upstream (the version map's URLs)")
	cmd.Flags().StringArrayVar(&f.WorkerHosts, "worker-host", nil, "a machine that becomes a worker (repeatable; same SSH settings as --ssh-host)")
	cmd.Flags().StringVar(&f.PostBootstrap, "post-bootstrap-script-path", "", "a script run as root on the first master once the cluster is ready")
	cmd.Flags().StringVar(&f.CNI, "cni", "", "the CNI to install (default: the enabled ModuleConfig cni-<name>, else flannel)")
	cmd.Flags().StringVar(&f.PlatformImage, "platform-image", "", `platform controller image, overriding InitConfiguration deckhouse.platformImage/devBranch: a full reference, or ":<tag>" for Deckhouse's layout <imagesRepo>:<tag>; a version tag, never a release channel (default <nodeImagesRepo>/platform-controller:<the version map's tag>)`)
	cmd.Flags().DurationVar(&f.PlatformTimeout, "deckhouse-timeout", install.DefaultPlatformTimeout, "how long to wait for the CNI, CoreDNS and the platform controller")
	cmd.Flags().DurationVar(&f.ResourcesTimeout, "resources-timeout", install.DefaultResourcesTimeout, "how long to wait for the resources' kinds to be served and for them to be ready")
	cmd.Flags().DurationVar(&f.ClusterTimeout, "cluster-timeout", bootstrap.DefaultClusterTimeout, "how long to wait for every node Ready")
	cmd.Flags().StringVar(&f.Kubeconfig, "kubeconfig", "", "reach the API server directly with this kubeconfig instead of through SSH to the first master")
	f.Engine.add(cmd)
}

func newBootstrapCommand(opts *globalOptions) *cobra.Command {
	var f bootstrapFlags
	tree := bootstrap.Tree()
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create a cluster: first master, CNI, platform, other nodes and resources",
		Long: `Create a static cluster on machines reachable over SSH, in phases:
` + phaseList(tree, nil) + `
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
			return runBootstrap(cmd, opts, &f, nil, nodeRole{})
		},
	}
	f.add(cmd, tree)
	return cmd
}

// nodeRole is what execute-bashible-bundle's --role and --node-ip say about its one host.
type nodeRole struct {
	Role   string
	NodeIP string
}

// newBootstrapPhaseCommand is `dhctl bootstrap-phase <c.Use>`: the bootstrap restricted to c's
// phases, with the bootstrap's flags.
func newBootstrapPhaseCommand(opts *globalOptions, c bootstrap.Command) *cobra.Command {
	var f bootstrapFlags
	var nr nodeRole
	tree := bootstrap.Tree()
	cmd := &cobra.Command{
		Use:   c.Use,
		Short: c.Short,
		Long: c.Short + `, as the bootstrap does it: these phases of its tree (see dhctl bootstrap --help)
` + phaseList(tree, c.Phases) + `
It takes the bootstrap's flags; --only-phase and --skip-phase pick among the phases above. Finished
phases whose inputs did not change are skipped; a phase named by --only-phase runs again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBootstrap(cmd, opts, &f, &c, nr)
		},
	}
	f.add(cmd, subtree(tree, c.Phases))
	if c.Use == "preflight" {
		cmd.Long += preflightChecksHelp
	}
	if c.Use == "execute-bashible-bundle" {
		cmd.Long += `

With one --ssh-host and --role, the host is prepared as the first master (kubeadm init) when the
cluster's state dir has no first master yet or names this host, else it joins as --role: give
every node's run the same --cluster-name (the default derives it from the first --ssh-host).`
		cmd.Flags().StringVar(&nr.Role, "role", "", "with one --ssh-host: what it becomes, master or worker (default: master, or the first master of the state dir when it is that host)")
		cmd.Flags().StringVar(&nr.NodeIP, "node-ip", "", "with one --ssh-host: its node address (default: the SSH host when it is an IP)")
	}
	return cmd
}

func runBootstrap(cmd *cobra.Command, opts *globalOptions, f *bootstrapFlags, sub *bootstrap.Command, nr nodeRole) error {
	start := time.Now()
	skip, mins, err := f.Preflight.settings()
	if err != nil {
		return err
	}
	if f.Node.PackagesSource != "registry" && f.Node.PackagesSource != "upstream" {
		return usageError(fmt.Errorf("--packages-source %q: want registry or upstream", f.Node.PackagesSource))
	}
	only, err := selectPhases(f.Phases.Only, sub)
	if err != nil {
		return err
	}
	var script []byte
	if f.PostBootstrap != "" {
		if script, err = config.ReadFile(cmd.Context(), f.PostBootstrap, maxScriptSize); err != nil {
			return usageError(fmt.Errorf("--post-bootstrap-script-path: %w", err))
		}
	}
	// The session knows every machine (it pins their keys); the roles are ours.
	o := *opts
	if len(f.WorkerHosts) > 0 && len(o.SSH.Hosts) == 0 {
		return usageError(errors.New("--worker-host needs the masters as --ssh-host flags too (the first --ssh-host is the first master)"))
	}
	o.SSH.Hosts = slices.Clone(o.SSH.Hosts)
	for _, w := range f.WorkerHosts {
		if slices.Contains(o.SSH.Hosts, w) {
			return usageError(fmt.Errorf("--worker-host %s is also an --ssh-host (a master): list each machine once", w))
		}
		o.SSH.Hosts = append(o.SSH.Hosts, w)
	}
	by := "bootstrap"
	if sub != nil {
		by = "bootstrap-phase " + sub.Use
	}
	// Every part of the tree needs the registry of InitConfiguration (preflight checks it, nodes
	// pull from it, the install points the platform at it).
	s, err := openSession(cmd, &o, true, config.Requirement{Kind: config.KindInitConfiguration, By: by})
	if err != nil {
		return err
	}
	defer s.Close()
	vm, vmDigest, err := f.Node.versionMapAndDigest(cmd.Context(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	inv, bundleOnly, err := staticInventory(s.Hosts(), f.WorkerHosts, nr, s.ClusterState(), sub)
	if err != nil {
		return err
	}
	prov, runner, err := f.Engine.cloud(cmd.Context(), s, s.Config())
	if err != nil {
		return err
	}
	if bundleOnly != nil && len(f.Phases.Only) == 0 {
		only = bundleOnly
	}
	b, err := bootstrap.New(bootstrap.Options{
		Candi:                   candi.FS,
		Cluster:                 s.Config(),
		VersionMap:              vm,
		VersionMapDigest:        vmDigest,
		State:                   s.ClusterState(),
		Log:                     s.Log(),
		Out:                     cmd.OutOrStdout(),
		Inventory:               inv,
		Connect:                 s.Connect,
		Clients:                 s.Clients,
		Preflight:               bootstrap.PreflightOptions{Skip: skip, Minimums: mins},
		Provider:                prov,
		Infra:                   runner,
		Kubeconfig:              f.Kubeconfig,
		UpstreamPackages:        f.Node.PackagesSource == "upstream",
		CNI:                     f.CNI,
		PlatformImage:           f.PlatformImage,
		InstallerVersion:        buildVersion(),
		PlatformTimeout:         f.PlatformTimeout,
		ResourcesTimeout:        f.ResourcesTimeout,
		ClusterTimeout:          f.ClusterTimeout,
		PostBootstrapScript:     f.PostBootstrap,
		PostBootstrapScriptData: script,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	phases := f.Phases
	phases.Only = only
	tree := b.Phases()
	if sub != nil {
		// Only the command's part of the tree: the rest would be listed as not selected.
		tree = subtree(tree, sub.Phases)
	}
	res, err := s.RunPhases(cmd.Context(), tree, phases)
	if err != nil || sub != nil {
		return err
	}
	// A full run (not a dry run, not a hand-picked subset) finished the cluster: from now on abort
	// refuses to tear it down without --force-abort-finished-cluster.
	if !f.Phases.DryRun && len(f.Phases.Only) == 0 {
		if err := s.ClusterState().MarkCompleted(time.Now()); err != nil {
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

// selectPhases is what --only-phase means for a command: for bootstrap, the flag as given; for a
// bootstrap-phase command, its own phases, or those of the flag when each lies inside them.
func selectPhases(only []string, sub *bootstrap.Command) ([]string, error) {
	if sub == nil {
		return only, nil
	}
	if len(only) == 0 {
		return sub.Phases, nil
	}
	infos, err := phase.List(subtree(bootstrap.Tree(), sub.Phases))
	if err != nil {
		return nil, err
	}
	for _, o := range only {
		found := false
		for _, in := range infos {
			found = found || o == in.Name || o == in.Path
		}
		if !found {
			return nil, usageError(fmt.Errorf("--only-phase %s: not a phase of bootstrap-phase %s (its phases: %s)", o, sub.Use, strings.Join(names(infos), ", ")))
		}
	}
	return only, nil
}

// staticInventory makes the machines of a static cluster from the SSH hosts (the first is the
// first master) and the workers among them. For execute-bashible-bundle with --role (one host),
// the first master may be the state dir's, and then only the joining phases run: bundleOnly says
// which.
func staticInventory(hosts, workers []string, nr nodeRole, local *clusterstate.Local, sub *bootstrap.Command) (inv *inventory.Inventory, bundleOnly []string, err error) {
	if nr.NodeIP != "" || nr.Role != "" {
		if len(hosts) != 1 {
			return nil, nil, usageError(fmt.Errorf("--role and --node-ip apply to one --ssh-host (got %d)", len(hosts)))
		}
	}
	// A host given by name keeps it as its "address", which the inventory refuses by name.
	ip := func(h string) string {
		if ep, err := ssh.ParseEndpoint(h); err == nil {
			return ep.Host
		}
		return h
	}
	if nr.NodeIP != "" {
		ip = func(string) string { return nr.NodeIP }
	}
	inv, err = inventory.New()
	if err != nil {
		return nil, nil, err
	}
	if sub != nil && sub.Use == "execute-bashible-bundle" && len(hosts) == 1 && len(workers) == 0 {
		role, err := inventory.ParseRole(firstNonEmpty(nr.Role, string(inventory.Master)))
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--role: %w", err))
		}
		j, err := local.Join()
		if err != nil {
			return nil, nil, err
		}
		h := inventory.Host{SSH: hosts[0], IP: ip(hosts[0]), Role: role}
		if net.ParseIP(h.IP) == nil {
			return nil, nil, usageError(fmt.Errorf("--node-ip is required: the SSH host %q is not an IP address", hosts[0]))
		}
		switch {
		case role == inventory.Master && (j.MasterIP == "" || j.MasterIP == h.IP):
			return inventoryOf(h, phasesOf(bootstrap.PhaseFirstMaster))
		case j.MasterIP == "":
			return nil, nil, usageError(errors.New("no first master in this cluster's state dir yet: run this command for the first master (--role master) first"))
		}
		fm := inventory.Host{SSH: firstNonEmpty(j.MasterHost, j.MasterIP), IP: j.MasterIP, Role: inventory.Master}
		if err := inv.Add(fm); err != nil {
			return nil, nil, err
		}
		if err := inv.Add(h); err != nil {
			return nil, nil, usageError(err)
		}
		return inv, phasesOf(bootstrap.PhaseNodes), nil
	}
	for _, h := range hosts {
		role := inventory.Master
		if slices.Contains(workers, h) {
			role = inventory.Worker
		}
		if err := inv.Add(inventory.Host{SSH: h, IP: ip(h), Role: role}); err != nil {
			return nil, nil, usageError(err)
		}
	}
	return inv, nil, nil
}

func inventoryOf(h inventory.Host, only []string) (*inventory.Inventory, []string, error) {
	inv, err := inventory.New(h)
	if err != nil {
		return nil, nil, usageError(err)
	}
	return inv, only, nil
}

func phasesOf(names ...string) []string { return names }

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// versionMapAndDigest is versionMap plus the override's digest ("" without one), so a changed
// override re-runs the node phases.
func (f *nodeFlags) versionMapAndDigest(ctx context.Context, w io.Writer) (vm *config.VersionMap, digest string, err error) {
	if vm, err = f.versionMap(ctx, w); err != nil {
		return nil, "", err
	}
	if f.VersionMapFile != "" {
		data, err := config.ReadFile(ctx, f.VersionMapFile, maxVersionMapSize)
		if err != nil {
			return nil, "", usageError(fmt.Errorf("--version-map-override: %w", err))
		}
		sum := sha256.Sum256(data)
		digest = hex.EncodeToString(sum[:])
	}
	return vm, digest, nil
}
