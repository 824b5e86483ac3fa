package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/providers"
)

// Phase names of a cloud cluster's infrastructure.
const (
	PhaseBaseInfra = "base-infra"
	PhaseNodeInfra = "node-infra"
)

// noInfra skips the infrastructure phases of a static cluster.
func (b *Bootstrap) noInfra() string {
	if b.o.Provider == nil {
		return "a static cluster has no infrastructure to make"
	}
	return ""
}

// discovery is the provider's discovery data: learnt once per cluster (the base infrastructure
// step) and kept in the local state, then in the cluster.
func (b *Bootstrap) discovery(ctx context.Context) (json.RawMessage, error) {
	if d, err := b.o.State.DiscoveryData(); err != nil || d != nil {
		return d, err
	}
	d, err := b.o.Provider.Discover(ctx)
	if err != nil {
		return nil, err
	}
	return d, b.o.State.SaveDiscoveryData(d)
}

// steps builds the layout's steps, with the discovery data (made on first use).
func (b *Bootstrap) steps(ctx context.Context) (providers.Steps, error) {
	uuid, err := b.o.State.ClusterUUID()
	if err != nil {
		return providers.Steps{}, err
	}
	d, err := b.discovery(ctx)
	if err != nil {
		return providers.Steps{}, err
	}
	return providers.Steps{Provider: b.o.Provider, Cluster: b.o.Cluster, UUID: uuid, Discovery: d, Layout: b.o.Layout}, nil
}

// converge plans a step and applies it when it changes something. A destructive plan is never
// applied by a bootstrap: it means the infrastructure already holds something else.
func (b *Bootstrap) converge(ctx context.Context, s infra.Step) (infra.Outputs, error) {
	plan, err := b.o.Infra.Plan(ctx, s, b.o.Provider.DestructiveTypes())
	if err != nil {
		return nil, err
	}
	if !plan.HasChanges() {
		b.o.Log.Info("infrastructure in sync", "step", s.Name)
		return b.o.Infra.Output(ctx, s)
	}
	var text strings.Builder
	_ = plan.WriteText(&text)
	if len(plan.Destructive()) > 0 {
		return nil, fmt.Errorf("step %s: the plan would destroy what exists:\n%sa bootstrap never does that: if this infrastructure belongs to another cluster, choose another cloud.prefix; to change it, use dhctl converge", s.Name, text.String())
	}
	b.o.Log.Info("infrastructure plan", "step", s.Name, "plan", strings.TrimSpace(text.String()))
	return b.o.Infra.Apply(ctx, plan)
}

func (b *Bootstrap) baseInfra(ctx context.Context) error {
	steps, err := b.steps(ctx)
	if err != nil {
		return err
	}
	s, err := steps.Base(clusterstate.BaseInfrastructure)
	if err != nil {
		return exitcode.Usage(err)
	}
	_, err = b.converge(ctx, s)
	return err
}

// nodeInfra makes every machine of the configuration, one step each, and puts them in the
// inventory (and the local state's record of machines, for later commands). It runs every time:
// a step in sync costs a plan, and the outputs are what fills the inventory.
func (b *Bootstrap) nodeInfra(ctx context.Context) error {
	specs, err := b.o.Provider.Nodes(b.o.Cluster)
	if err != nil {
		return exitcode.Usage(err)
	}
	steps, err := b.steps(ctx)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		s, err := steps.Node(spec)
		if err != nil {
			return exitcode.Usage(err)
		}
		if err := steps.Adopt(ctx, b.o.Infra, b.o.State, spec, s, b.o.Log); err != nil {
			return err
		}
		out, err := b.converge(ctx, s)
		if err != nil {
			return err
		}
		h, err := b.o.Provider.Machine(spec, out)
		if err != nil {
			return err
		}
		if err := b.o.State.RecordMachine(clusterstate.MachineOf(h, spec.Index, spec.Settings)); err != nil {
			return err
		}
		if err := b.o.Inventory.Add(h); err != nil {
			return err
		}
	}
	return nil
}

// infraStates are the infrastructure states to keep in the cluster (install/cluster-state).
func (b *Bootstrap) infraStates() (clusterstate.Infra, error) {
	var out clusterstate.Infra
	if b.o.Provider == nil {
		return out, nil
	}
	base, err := b.o.State.TerraformState(clusterstate.BaseInfrastructure)
	if err != nil {
		return out, err
	}
	out.Base = base
	if out.DiscoveryData, err = b.o.State.DiscoveryData(); err != nil {
		return out, err
	}
	specs, err := b.o.Provider.Nodes(b.o.Cluster)
	if err != nil {
		return out, err
	}
	for _, spec := range specs {
		st, err := b.o.State.TerraformState(spec.Name)
		if err != nil {
			return out, err
		}
		if len(st) == 0 {
			continue // not made yet: the cluster-state phase runs again once it is
		}
		out.Nodes = append(out.Nodes, clusterstate.NodeState{Node: spec.Name, NodeGroup: spec.NodeGroup, State: st, Settings: spec.Settings})
	}
	return out, nil
}

// machinesFromState fills the inventory of a cloud cluster from the machines earlier runs made,
// for commands that do not run node-infra (install-deckhouse, create-resources alone).
func machinesFromState(l *clusterstate.Local, inv *inventory.Inventory) error {
	ms, err := l.Machines()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		errs = append(errs, inv.Add(inventory.Host{SSH: m.SSH, IP: m.IP, Role: inventory.Role(m.Role), Name: m.Name, NodeGroup: m.NodeGroup}))
	}
	return errors.Join(errs...)
}
