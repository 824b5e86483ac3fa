package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/preflight"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Phase names, for --skip-phase/--only-phase.
const (
	PhasePreflight     = "preflight"
	PhaseConnect       = "connect"
	PhasePrepare       = "prepare"
	PhaseFirstMaster   = "first-master"
	PhaseGrow          = "grow"
	PhaseNodes         = "nodes"
	PhaseMasters       = "masters"
	PhaseWorkers       = "workers"
	PhaseWaitCluster   = "wait-cluster"
	PhasePostBootstrap = "post-bootstrap-script"
)

// Command is a `dhctl bootstrap-phase` sub-command: it runs Phases of the tree (with their
// subtrees) alone, with the bootstrap's flags.
type Command struct {
	Use    string
	Short  string
	Phases []string
}

// Commands are the bootstrap-phase sub-commands bound to this tree (Deckhouse's names).
func Commands() []Command {
	return []Command{
		{Use: "preflight", Short: "Run the preflight checks against the machines", Phases: []string{PhasePreflight}},
		{Use: "base-infra", Short: "Make the base infrastructure of a cloud cluster", Phases: []string{PhaseBaseInfra}},
		{Use: "execute-bashible-bundle", Short: "Prepare nodes: packages, containerd, kubelet, then kubeadm init (first master) or join",
			Phases: []string{PhasePrepare, PhaseFirstMaster, PhaseNodes}},
		{Use: "install-deckhouse", Short: "Install the CNI, the NodeGroups, the platform controller and the cluster state",
			Phases: []string{install.PhaseInstall}},
		{Use: "create-resources", Short: "Create the --resources documents in the cluster", Phases: []string{install.PhaseCreateResources}},
	}
}

// Phases is the whole tree, in order. It reads the options only when phases run (see Tree).
func (b *Bootstrap) Phases() []phase.Phase {
	return []phase.Phase{
		leaf(&funcPhase{name: PhasePreflight, title: "Check every machine before changing anything (preflight)", run: b.preflight,
			inputs: b.preflightInputs, skipIf: b.preflightNotNeeded}),
		leaf(&funcPhase{name: PhaseBaseInfra, title: "Make the base infrastructure (cloud)", run: b.baseInfra, skipIf: b.noInfra}),
		leaf(&funcPhase{name: PhaseNodeInfra, title: "Make the machines (cloud): one step per node", run: b.nodeInfra, skipIf: b.noInfra}),
		leaf(&funcPhase{name: PhaseConnect, title: "Connect to every machine over SSH", run: b.connectAll}),
		leaf(&funcPhase{name: PhasePrepare, title: "Prepare every machine at once: packages, containerd, kubelet", run: b.prepareAll,
			inputs: b.nodeInputs(PhasePrepare, b.o.Inventory.All)}),
		leaf(&funcPhase{name: PhaseFirstMaster, title: "Prepare the first master: node bundle, kubeadm init", run: b.bootstrapFirstMaster,
			inputs: b.nodeInputs(PhaseFirstMaster, func() []inventory.Host { return first(b.o.Inventory.Masters()) })}),
		// The other nodes join while the CNI and the platform install: a join needs the API
		// server and a token, not the CNI, and the install needs only the first master; the
		// CNI's pods then start on every node as it joins.
		phase.NewConcurrentGroup(PhaseGrow, "Join the other nodes and install the CNI and the platform, at once",
			phase.NewGroup(PhaseNodes, "Add the other masters and the workers",
				leaf(&funcPhase{name: PhaseMasters, title: "Join the other masters, one at a time", run: b.joinMasters,
					inputs: b.nodeInputs(PhaseMasters, b.otherMasters), skipIf: b.noOtherMasters}),
				leaf(&funcPhase{name: PhaseWorkers, title: "Join the workers, in parallel", run: b.joinWorkers,
					inputs: b.nodeInputs(PhaseWorkers, b.workers), skipIf: b.noWorkers}),
			),
			b.install,
		),
		b.resources,
		leaf(&funcPhase{name: PhaseWaitCluster, title: "Wait for every node Ready and a healthy control plane; give every node its group's template", run: b.waitCluster}),
		leaf(&funcPhase{name: PhasePostBootstrap, title: "Run the post-bootstrap script on the first master", run: b.postBootstrap,
			inputs: func() (any, error) {
				fm, _ := b.o.Inventory.FirstMaster()
				return map[string]any{"script": digest(b.o.PostBootstrapScriptData), "host": fm}, nil
			}, skipIf: func() string {
				if b.o.PostBootstrapScript == "" {
					return "no --post-bootstrap-script-path"
				}
				return ""
			}}),
	}
}

func first(hs []inventory.Host) []inventory.Host {
	if len(hs) == 0 {
		return nil
	}
	return hs[:1]
}

func (b *Bootstrap) otherMasters() []inventory.Host {
	m := b.o.Inventory.Masters()
	if len(m) < 2 {
		return nil
	}
	return m[1:]
}

func (b *Bootstrap) workers() []inventory.Host { return b.o.Inventory.Workers() }

func (b *Bootstrap) noOtherMasters() string {
	if len(b.otherMasters()) == 0 {
		return "no other master in this cluster"
	}
	return ""
}

func (b *Bootstrap) noWorkers() string {
	if len(b.workers()) == 0 {
		return "no worker in this cluster"
	}
	return ""
}

// funcPhase is a leaf phase of the bootstrap: a function, optional inputs (resume) and an
// optional condition decided at run time.
type funcPhase struct {
	name, title string
	run         func(ctx context.Context) error
	inputs      func() (any, error) // nil: runs on every run
	// skipIf decides at run time: a non-empty reason skips the phase.
	skipIf func() string
}

func (p *funcPhase) Name() string                     { return p.name }
func (p *funcPhase) Title() string                    { return p.title }
func (p *funcPhase) Run(ctx context.Context) error    { return p.run(ctx) }
func (p *funcPhase) DryRun(ctx context.Context) error { return nil }

func (p *funcPhase) ShouldRun(context.Context) (bool, string, error) {
	if p.skipIf != nil {
		if reason := p.skipIf(); reason != "" {
			return false, reason, nil
		}
	}
	return true, "", nil
}

// inputsPhase adds WithInputs to a funcPhase that has inputs (the runner finds it by interface).
type inputsPhase struct{ *funcPhase }

func (p inputsPhase) Inputs() (any, error) { return p.inputs() }

// leaf returns the phase value with the interfaces it really has.
func leaf(p *funcPhase) phase.Phase {
	if p.inputs != nil {
		return inputsPhase{p}
	}
	return p
}

// preflightHosts are the machines the preflight checks: all of them before kubeadm init; after
// it, only those dhctl has not touched yet (the cluster's own machines fail the leftovers and
// ports checks by design, a machine being added must still pass them).
func (b *Bootstrap) preflightHosts() ([]inventory.Host, error) {
	all := b.o.Inventory.All()
	init, err := b.o.State.InitSettings()
	if err != nil || init == nil {
		return all, err
	}
	touched, err := b.o.State.TouchedHosts()
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, t := range touched {
		done[t.Host] = true
	}
	var out []inventory.Host
	for _, h := range all {
		if !done[h.SSH] {
			out = append(out, h)
		}
	}
	return out, nil
}

func (b *Bootstrap) preflightNotNeeded() string {
	if b.o.Provider != nil {
		return ""
	}
	hosts, err := b.preflightHosts()
	if err == nil && len(hosts) == 0 && b.o.Inventory.Len() > 0 {
		return "every machine is already part of this cluster (kubeadm init ran; its own kubelet and ports would fail the checks)"
	}
	return ""
}

// preflightInputs are every machine (not only those still to check), so a re-run with the same
// machines and settings skips the phase as done.
func (b *Bootstrap) preflightInputs() (any, error) {
	return map[string]any{"hosts": b.o.Inventory.All(), "skip": b.o.Preflight.Skip, "minimums": fmt.Sprint(b.o.Preflight.Minimums)}, nil
}

func (b *Bootstrap) preflight(ctx context.Context) error {
	if b.o.Provider != nil {
		if err := b.o.Provider.Preflight(ctx, b.o.Cluster); err != nil {
			return err
		}
		b.o.Log.Info("cloud preflight passed", "provider", b.o.Provider.Name())
	}
	hosts, err := b.preflightHosts()
	if err != nil {
		return err
	}
	if len(hosts) == 0 && b.o.Provider != nil {
		return nil // the machines are not made yet
	}
	return preflight.CheckHosts(ctx, preflight.HostsOptions{
		Hosts: hosts, Clients: b.o.Clients, Cluster: b.o.Cluster, Images: b.pulledImages(),
		Minimums: b.o.Preflight.Minimums, Skip: b.o.Preflight.Skip, Log: b.o.Log, Out: b.o.Out,
	})
}

// pulledImages are the images the nodes will pull: the node images and the platform.
func (b *Bootstrap) pulledImages() []string {
	ic := b.o.Cluster.InitConfiguration
	rel, ok := b.o.VersionMap.Release(b.o.Cluster.KubernetesVersion)
	if ic == nil || !ok {
		return nil // the configuration checks say what is missing
	}
	return append(ic.Deckhouse.NodeImageRefs(rel), b.installer.Values().Platform.Image)
}

func (b *Bootstrap) connectAll(ctx context.Context) error {
	return onEach(b.o.Inventory.All(), func(h inventory.Host) error {
		if _, err := b.client(ctx, h.SSH); err != nil {
			return fmt.Errorf("host %s: %w", h.SSH, err)
		}
		return nil
	})
}

// onEach runs fn for every host at once and joins their errors.
func onEach(hosts []inventory.Host, fn func(inventory.Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// nodeInputs: a node phase re-runs when its hosts, the node-level configuration or the version
// map override change, not when only --resources do. hosts is read when the runner asks.
func (b *Bootstrap) nodeInputs(what string, hosts func() []inventory.Host) func() (any, error) {
	return func() (any, error) {
		fm, _ := b.o.Inventory.FirstMaster()
		return map[string]any{
			"phase":       what,
			"hosts":       hosts(),
			"firstMaster": fm.IP,
			"cluster":     b.o.Cluster.ClusterConfiguration,
			"init":        b.o.Cluster.InitConfiguration,
			"static":      b.o.Cluster.StaticClusterConfiguration,
			"kubernetes":  b.o.Cluster.KubernetesVersion,
			"versionMap":  b.o.VersionMapDigest,
		}, nil
	}
}

// firstMasterClient is the first master and the run's SSH connection to it.
func (b *Bootstrap) firstMasterClient(ctx context.Context) (inventory.Host, *ssh.Client, error) {
	fm, err := b.firstMaster()
	if err != nil {
		return fm, nil, err
	}
	c, err := b.client(ctx, fm.SSH)
	return fm, c, err
}

func (b *Bootstrap) bootstrapFirstMaster(ctx context.Context) error {
	fm, c, err := b.firstMasterClient(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := b.nodes.FirstMaster(ctx, c, fm)
	if err != nil {
		return err
	}
	logBundle(b.o.Log, fm, res.Report, start)
	b.o.Log.Info("admin kubeconfig saved", "path", b.KubeconfigPath())
	return nil
}

// prepareAll runs every machine's cluster-independent steps at once: the first master's
// kubeadm init and every join then wait only for their kubeadm step.
func (b *Bootstrap) prepareAll(ctx context.Context) error {
	fm, err := b.firstMaster()
	if err != nil {
		return err
	}
	return onEach(b.o.Inventory.All(), func(h inventory.Host) error {
		c, err := b.client(ctx, h.SSH)
		if err != nil {
			return err
		}
		start := time.Now()
		rep, err := b.nodes.Prepare(ctx, c, h, fm.IP)
		if err != nil {
			return err
		}
		logBundle(b.o.Log, h, rep, start)
		return nil
	})
}

func (b *Bootstrap) join(ctx context.Context, h inventory.Host) error {
	c, err := b.client(ctx, h.SSH)
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := b.nodes.Join(ctx, c, h)
	if err != nil {
		return err
	}
	logBundle(b.o.Log, h, rep, start)
	return nil
}

// logBundle reports a finished node bundle: how many steps ran and how many were already done.
func logBundle(log *slog.Logger, h inventory.Host, rep node.Report, start time.Time) {
	log.Info("node bundle finished", "host", h.SSH, "role", h.Role, "steps_run", len(rep.Ran()),
		"steps_skipped", len(rep.Steps)-len(rep.Ran()), "took", time.Since(start).Round(10*time.Millisecond))
}

// joinMasters joins control-plane nodes one at a time: etcd grows one member at a time, and a
// second join during a member add would fail (or worse, lose quorum).
func (b *Bootstrap) joinMasters(ctx context.Context) error {
	if err := b.ensureJoinToken(ctx); err != nil {
		return err
	}
	for _, h := range b.otherMasters() {
		if err := b.join(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// joinWorkers joins workers in parallel: they share nothing but the API server.
func (b *Bootstrap) joinWorkers(ctx context.Context) error {
	if err := b.ensureJoinToken(ctx); err != nil {
		return err
	}
	return onEach(b.workers(), func(h inventory.Host) error { return b.join(ctx, h) })
}

// ensureJoinToken makes sure the local state's join token is one the cluster still has.
func (b *Bootstrap) ensureJoinToken(ctx context.Context) error {
	st, err := b.o.State.Join()
	if err != nil || !st.Ready() {
		return err // without join data the join itself says the first master is not bootstrapped
	}
	k, err := b.kubeClient(ctx)
	if err != nil {
		return err
	}
	_, err = b.nodes.EnsureJoinToken(ctx, k.Typed())
	return err
}

func (b *Bootstrap) postBootstrap(ctx context.Context) error {
	fm, c, err := b.firstMasterClient(ctx)
	if err != nil {
		return err
	}
	name := filepath.Base(b.o.PostBootstrapScript)
	res, err := c.RunScript(ctx, name, b.o.PostBootstrapScriptData, nil, true)
	if err != nil {
		return fmt.Errorf("post-bootstrap script %s on %s: %w (fix the script and run the same command again: only this phase re-runs)", b.o.PostBootstrapScript, fm.SSH, err)
	}
	b.o.Log.Info("post-bootstrap script finished", "script", b.o.PostBootstrapScript, "took", res.Duration)
	return nil
}

// canonical is the JSON of v (maps sorted), for comparing inputs.
func canonical(v any) (string, error) {
	data, err := json.Marshal(v)
	return string(data), err
}
