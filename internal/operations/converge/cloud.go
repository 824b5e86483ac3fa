package converge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/providers"
)

// CloudOptions are what a cloud cluster's converge needs: its provider, the engine's runner,
// the configuration the machines are made from and the local state holding their states.
type CloudOptions struct {
	Provider providers.Provider
	Infra    *infra.Runner
	Cluster  *config.Cluster
	State    *clusterstate.Local
}

// Infrastructure statuses of a step, as Deckhouse's `terraform check` reports them, plus the
// machines the configuration adds or drops.
const (
	InfraInSync      = "InSync"
	InfraOutOfSync   = "OutOfSync"
	InfraDestructive = "DestructiveOutOfSync"
	InfraCreate      = "Create"
	InfraDelete      = "Delete"
)

// InfraAction is one infrastructure step's plan: the base infrastructure or a machine.
type InfraAction struct {
	Step    string         `json:"step"`
	Group   string         `json:"nodeGroup,omitempty"`
	Status  string         `json:"status"`
	Changes []infra.Change `json:"changes,omitempty"`

	plan *infra.Plan
	spec providers.NodeSpec
}

// cloudSteps builds the cluster's infrastructure steps.
func (c *CloudOptions) steps() (providers.Steps, error) {
	uuid, err := c.State.ClusterUUID()
	if err != nil {
		return providers.Steps{}, err
	}
	discovery, err := c.State.DiscoveryData()
	if err != nil {
		return providers.Steps{}, err
	}
	return providers.Steps{Provider: c.Provider, Cluster: c.Cluster, UUID: uuid, Discovery: discovery}, nil
}

// planCloud plans every infrastructure step: the base infrastructure and each machine the
// configuration wants (made: the engine's plan; not made: created), and each machine made that
// it no longer wants (deleted); then what that means for the nodes (cloudNodes).
func planCloud(ctx context.Context, o Options, plan *Plan) error {
	c := o.Cloud
	steps, err := c.steps()
	if err != nil {
		return err
	}
	made, err := c.State.TerraformSteps()
	if err != nil {
		return err
	}
	check := func(s infra.Step, spec providers.NodeSpec) error {
		p, err := c.Infra.Plan(ctx, s, c.Provider.DestructiveTypes())
		if err != nil {
			return err
		}
		plan.Infrastructure = append(plan.Infrastructure, InfraAction{Step: s.Name, Group: spec.NodeGroup, Status: p.Status(), Changes: p.Changes, plan: p, spec: spec})
		return nil
	}
	if slices.Contains(made, clusterstate.BaseInfrastructure) {
		s, err := steps.Base(clusterstate.BaseInfrastructure)
		if err != nil {
			return exitcode.Usage(err)
		}
		if err := check(s, providers.NodeSpec{}); err != nil {
			return err
		}
	}
	specs, err := c.Provider.Nodes(c.Cluster)
	if err != nil {
		return exitcode.Usage(err)
	}
	machines, err := c.State.Machines()
	if err != nil {
		return err
	}
	recorded := map[string]clusterstate.Machine{}
	for _, m := range machines {
		recorded[m.Name] = m
	}
	wanted := map[string]bool{clusterstate.BaseInfrastructure: true}
	for _, spec := range specs {
		wanted[spec.Name] = true
		if !slices.Contains(made, spec.Name) {
			plan.Infrastructure = append(plan.Infrastructure, InfraAction{Step: spec.Name, Group: spec.NodeGroup, Status: InfraCreate, spec: spec})
			continue
		}
		s, err := steps.Node(spec)
		if err != nil {
			return exitcode.Usage(err)
		}
		if err := check(s, spec); err != nil {
			return err
		}
	}
	for _, name := range made {
		if !wanted[name] {
			spec := providers.MachineSpec(recorded[name])
			spec.Name = name
			plan.Infrastructure = append(plan.Infrastructure, InfraAction{Step: name, Group: spec.NodeGroup, Status: InfraDelete, spec: spec})
		}
	}
	return cloudNodes(o, recorded, plan)
}

// cloudNodes says what each infrastructure step means for its node (a cloud node is named as
// its machine): a machine to make is a node to create; a machine made but without a node (a
// run interrupted before its join) too; a machine to replace is a node to replace, and one to
// destroy a node to delete (both destructive). The first master, every node's control-plane
// endpoint, is never replaced or removed.
func cloudNodes(o Options, recorded map[string]clusterstate.Machine, plan *Plan) error {
	index := map[string]int{}
	for i, n := range plan.Nodes {
		index[n.Node] = i
	}
	for i := range plan.Infrastructure {
		a := &plan.Infrastructure[i]
		if a.Step == clusterstate.BaseInfrastructure {
			continue
		}
		j, exists := index[a.Step]
		n := NodeAction{Node: a.Step, Group: a.Group}
		if exists {
			n = plan.Nodes[j]
		}
		m := recorded[a.Step]
		n.Machine, n.infra, n.Address, n.ssh = a.Step, a, m.IP, m.SSH
		switch a.Status {
		case InfraCreate:
			n.Action = ActionCreate
		case InfraInSync, InfraOutOfSync:
			if exists {
				continue
			}
			n.Action = ActionCreate
		case InfraDestructive:
			n.Action, n.Destructive = ActionReplace, true
		case InfraDelete:
			n.Action, n.Destructive = ActionDelete, true
		}
		if n.Destructive && n.Group == config.MasterNodeGroup && o.FirstMasterIP != "" && n.Address == o.FirstMasterIP {
			return exitcode.Usage(fmt.Errorf("the plan would %s node %s, the first master (%s): every node reaches the control plane through it, so converge never replaces or removes it; keep masterNodeGroup's replicas and instance class as they were for it", n.Action, n.Node, n.Address))
		}
		if exists {
			plan.Nodes[j] = n
		} else {
			index[n.Node] = len(plan.Nodes)
			plan.Nodes = append(plan.Nodes, n)
		}
	}
	return nil
}

// writeInfra prints the infrastructure part of a plan.
func writeInfra(p Plan, w interface{ Write([]byte) (int, error) }) {
	for _, a := range p.Infrastructure {
		line := fmt.Sprintf("  infrastructure %s: %s", a.Step, a.Status)
		var parts []string
		for _, c := range a.Changes {
			part := fmt.Sprintf("%s %s", c.Action, c.Address)
			if len(c.ReplacePaths) > 0 {
				part += " (because of " + strings.Join(c.ReplacePaths, ", ") + ")"
			}
			parts = append(parts, part)
		}
		if len(parts) > 0 {
			line += ": " + strings.Join(parts, ", ")
		}
		fmt.Fprintln(w, line)
	}
}

// applyCloud applies each step that changes in place, then keeps its new state in the cluster
// (the engine saved it locally while it ran).
func applyCloud(ctx context.Context, o Options, k *kube.Client, safe *safePoints, p Plan) error {
	for _, a := range p.Infrastructure {
		if a.Status != InfraOutOfSync {
			continue
		}
		if err := safe.check(); err != nil {
			return err
		}
		start := time.Now()
		if _, err := o.Cloud.Infra.Apply(ctx, a.plan); err != nil {
			return fmt.Errorf("infrastructure %s: %w", a.Step, err)
		}
		if err := keepState(ctx, o.Cloud, k, a.Step, a.spec); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "infrastructure %s: changed in place in %s\n", a.Step, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// keepState puts a step's state, as the engine saved it locally, in the cluster (with the
// settings of its node's group).
func keepState(ctx context.Context, c *CloudOptions, k *kube.Client, step string, spec providers.NodeSpec) error {
	state, err := c.State.TerraformState(step)
	if err != nil {
		return err
	}
	obj := clusterstate.BaseStateObject(state)
	if step != clusterstate.BaseInfrastructure {
		obj = clusterstate.NodeStateObject(clusterstate.NodeState{Node: step, NodeGroup: spec.NodeGroup, State: state, Settings: spec.Settings})
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := k.Apply(cctx, obj); err != nil {
		return fmt.Errorf("infrastructure %s changed, but keeping its state in the cluster failed (the state dir has it; run converge again): %w", step, err)
	}
	return nil
}

// makeMachine makes a node's machine when its step is to create or replace (what an
// interrupted apply made is adopted first), or reads it when it is made, records it (the state
// dir's machines, the state in the cluster) and fills in how the node is reached. A machine
// made anew gets the host keys of its own: those pinned for its address before are forgotten.
func makeMachine(ctx context.Context, o Options, k *kube.Client, n *NodeAction) error {
	c := o.Cloud
	spec := n.infra.spec
	steps, err := c.steps()
	if err != nil {
		return err
	}
	s, err := steps.Node(spec)
	if err != nil {
		return exitcode.Usage(err)
	}
	var out infra.Outputs
	start := time.Now()
	switch n.infra.Status {
	case InfraCreate:
		if err := steps.Adopt(ctx, c.Infra, c.State, spec, s, o.Log); err != nil {
			return err
		}
		p, err := c.Infra.Plan(ctx, s, c.Provider.DestructiveTypes())
		if err != nil {
			return err
		}
		if len(p.Destructive()) > 0 {
			return fmt.Errorf("machine %s: making it would destroy what exists (%s): nothing of it was changed; run converge again to see the plan", spec.Name, destructiveChanges(&InfraAction{Changes: p.Changes}))
		}
		if out, err = c.Infra.Apply(ctx, p); err != nil {
			return fmt.Errorf("making machine %s: %w", spec.Name, err)
		}
	case InfraDestructive:
		if out, err = c.Infra.Apply(ctx, n.infra.plan); err != nil {
			return fmt.Errorf("making machine %s again: %w", spec.Name, err)
		}
	default:
		if out, err = c.Infra.Output(ctx, s); err != nil {
			return err
		}
	}
	h, err := c.Provider.Machine(spec, out)
	if err != nil {
		return err
	}
	if n.infra.Status != InfraInSync && n.infra.Status != InfraOutOfSync {
		for _, host := range []string{n.ssh, n.Address, h.SSH} {
			if host != "" {
				if err := c.State.UnpinHost(host); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(o.Out, "machine %s made (%s) in %s\n", spec.Name, h.IP, time.Since(start).Round(100*time.Millisecond))
	}
	if err := c.State.RecordMachine(clusterstate.MachineOf(h, spec.Index, spec.Settings)); err != nil {
		return err
	}
	if err := keepState(ctx, c, k, spec.Name, spec); err != nil {
		return err
	}
	n.Address, n.ssh = h.IP, h.SSH
	return nil
}

// destroyMachine destroys a removed node's machine with the settings it was made from, then
// forgets it: its Node (in case its kubelet registered it again meanwhile), its state in the
// cluster, its record and pinned keys in the state dir. Interrupted, its step's state is still
// there, so a re-run plans its deletion again.
func destroyMachine(ctx context.Context, o Options, k *kube.Client, n NodeAction) error {
	c := o.Cloud
	steps, err := c.steps()
	if err != nil {
		return err
	}
	s, err := steps.Leftover(n.infra.spec)
	if err != nil {
		return exitcode.Usage(err)
	}
	start := time.Now()
	if err := c.Infra.Destroy(ctx, s); err != nil {
		return fmt.Errorf("destroying machine %s: %w (its state is kept: run converge again)", n.Machine, err)
	}
	if err := deleteNode(ctx, k, n.Node); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = k.Typed().CoreV1().Secrets(clusterstate.StateNamespace).Delete(dctx, clusterstate.NodeStateSecretPrefix+n.Machine, metav1.DeleteOptions{})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("machine %s destroyed, but deleting its state from the cluster failed: %w", n.Machine, err)
	}
	if err := c.State.ForgetMachine(n.Machine); err != nil {
		return err
	}
	for _, host := range []string{n.ssh, n.Address} {
		if host != "" {
			if err := c.State.UnpinHost(host); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(o.Out, "machine %s destroyed in %s\n", n.Machine, time.Since(start).Round(100*time.Millisecond))
	return nil
}
