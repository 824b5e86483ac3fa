package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// Steps builds a cluster's infrastructure steps: the module of the layout and the variables
// (the common ones, plus those the provider takes from its discovery data). Bootstrap, abort,
// converge and destroy all run the same steps.
type Steps struct {
	Provider  Provider
	Cluster   *config.Cluster
	UUID      string
	Discovery json.RawMessage
	Layout    string // "" = the provider document's
}

// Base is the base infrastructure step.
func (s Steps) Base(name string) (infra.Step, error) { return s.step(name, BaseInfrastructure, nil) }

// Node is one machine's step.
func (s Steps) Node(spec NodeSpec) (infra.Step, error) { return s.step(spec.Name, spec.Step, &spec) }

func (s Steps) step(name, module string, spec *NodeSpec) (infra.Step, error) {
	mod, err := s.Provider.Module(s.Layout, module)
	if err != nil {
		return infra.Step{}, err
	}
	vars, err := Vars(s.Cluster, s.UUID, spec, "")
	if err != nil {
		return infra.Step{}, err
	}
	extra, err := s.Provider.DiscoveryVars(s.Discovery)
	if err != nil {
		return infra.Step{}, err
	}
	for k, v := range extra {
		vars[k] = v
	}
	return infra.Step{Name: name, Module: mod, Vars: vars}, nil
}

// Leftover is the step of a machine the configuration no longer asks for (its group shrank or
// went away), evaluated with the settings its group had when the machine was made
// (spec.Settings, kept with its state): the step's module reads its group from the provider
// document, which may no longer hold it, or no longer hold its index (a static address of a
// replica now dropped). Every Deckhouse provider document holds its groups the same way:
// masterNodeGroup, and nodeGroups[] by name.
func (s Steps) Leftover(spec NodeSpec) (infra.Step, error) {
	if len(spec.Settings) == 0 {
		return infra.Step{}, fmt.Errorf("machine %s: the settings of its node group %s were not kept with it, so its step cannot be evaluated: put the group back in the configuration (with this machine's replica) to destroy it", spec.Name, spec.NodeGroup)
	}
	var group map[string]any
	if err := json.Unmarshal(spec.Settings, &group); err != nil {
		return infra.Step{}, fmt.Errorf("machine %s: the kept settings of node group %s: %w", spec.Name, spec.NodeGroup, err)
	}
	if s.Cluster.ProviderClusterConfiguration == nil {
		return infra.Step{}, fmt.Errorf("no provider cluster configuration document")
	}
	raw, err := json.Marshal(s.Cluster.ProviderClusterConfiguration.Object)
	if err != nil {
		return infra.Step{}, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return infra.Step{}, err
	}
	if spec.Role == inventory.Master {
		doc["masterNodeGroup"] = group
	} else {
		group["name"] = spec.NodeGroup
		groups, _ := doc["nodeGroups"].([]any)
		i := slices.IndexFunc(groups, func(g any) bool { m, _ := g.(map[string]any); return m["name"] == spec.NodeGroup })
		if i < 0 {
			groups = append(groups, group)
		} else {
			groups[i] = group
		}
		doc["nodeGroups"] = groups
	}
	pcc := *s.Cluster.ProviderClusterConfiguration
	pcc.Object = doc
	c := *s.Cluster
	c.ProviderClusterConfiguration = &pcc
	s.Cluster = &c
	return s.Node(spec)
}

// Adopt imports into a machine's step what an apply killed before the engine saved its state
// made (the provider finds it), so that the next plan does not make a second machine.
func (s Steps) Adopt(ctx context.Context, r *infra.Runner, l *clusterstate.Local, spec NodeSpec, step infra.Step, log *slog.Logger) error {
	state, err := l.TerraformState(spec.Name)
	if err != nil {
		return err
	}
	orphans, err := s.Provider.Orphans(ctx, s.Cluster, s.UUID, spec, state)
	if err != nil {
		return err
	}
	for _, o := range orphans {
		log.Warn("adopting a machine an interrupted run made", "step", spec.Name, "resource", o.Address, "id", o.ID)
		if err := r.Import(ctx, step, o.Address, o.ID); err != nil {
			return err
		}
	}
	return nil
}
