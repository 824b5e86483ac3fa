package converge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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

// planCloud plans every infrastructure step: the base infrastructure and each machine the
// configuration wants (made: the engine's plan; not made: created), and each machine made that
// it no longer wants (deleted).
func planCloud(ctx context.Context, c *CloudOptions, plan *Plan) error {
	uuid, err := c.State.ClusterUUID()
	if err != nil {
		return err
	}
	discovery, err := c.State.DiscoveryData()
	if err != nil {
		return err
	}
	steps := providers.Steps{Provider: c.Provider, Cluster: c.Cluster, UUID: uuid, Discovery: discovery}
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
			plan.Infrastructure = append(plan.Infrastructure, InfraAction{Step: name, Status: InfraDelete})
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

// cloudUnsupported says what of a cloud plan this build cannot carry out ("" when it can all be).
func cloudUnsupported(p Plan) string {
	var what []string
	for _, a := range p.Infrastructure {
		switch a.Status {
		case InfraCreate:
			what = append(what, "making machine "+a.Step)
		case InfraDelete:
			what = append(what, "removing machine "+a.Step)
		case InfraDestructive:
			what = append(what, "replacing machine "+a.Step)
		}
	}
	if len(what) == 0 {
		return ""
	}
	return strings.Join(what, ", ")
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
		state, err := o.Cloud.State.TerraformState(a.Step)
		if err != nil {
			return err
		}
		obj := clusterstate.BaseStateObject(state)
		if a.Step != clusterstate.BaseInfrastructure {
			obj = clusterstate.NodeStateObject(clusterstate.NodeState{Node: a.Step, NodeGroup: a.spec.NodeGroup, State: state, Settings: a.spec.Settings})
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err = k.Apply(cctx, obj)
		cancel()
		if err != nil {
			return fmt.Errorf("infrastructure %s changed, but keeping its state in the cluster failed (the state dir has it; run converge again): %w", a.Step, err)
		}
		fmt.Fprintf(o.Out, "infrastructure %s: changed in place in %s\n", a.Step, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}
