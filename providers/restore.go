package providers

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// Restore fills the local state from the copies the cluster keeps (snap) where the local state
// has none: the base infrastructure's state, the discovery data, and each machine's state and
// record (its address from its state's outputs, its group's settings from its Secret). This is
// what a state dir made on another machine than the bootstrap's needs, and what one whose
// copy was lost needs. A local state is never replaced: it is as new as the cluster's, or newer
// (saved while the engine ran). It returns the machines restored.
func (s Steps) Restore(l *clusterstate.Local, snap *clusterstate.Snapshot) ([]string, error) {
	if len(snap.BaseInfraState) > 0 {
		if err := fill(l, clusterstate.BaseInfrastructure, snap.BaseInfraState); err != nil {
			return nil, err
		}
	}
	if have, err := l.DiscoveryData(); err != nil {
		return nil, err
	} else if len(have) == 0 && len(snap.ProviderDiscoveryData) > 0 {
		if err := l.SaveDiscoveryData(snap.ProviderDiscoveryData); err != nil {
			return nil, err
		}
	}
	specs, err := s.Provider.Nodes(s.Cluster)
	if err != nil {
		return nil, err
	}
	var restored []string
	for _, n := range snap.Nodes {
		if have, err := l.TerraformState(n.Node); err != nil {
			return nil, err
		} else if len(have) > 0 {
			continue
		}
		spec, err := specOfState(n, specs)
		if err != nil {
			return nil, err
		}
		outputs, err := infra.StateOutputs(n.State)
		if err != nil {
			return nil, fmt.Errorf("the state of machine %s kept in the cluster (Secret %s/%s%s): %w", n.Node, clusterstate.StateNamespace, clusterstate.NodeStateSecretPrefix, n.Node, err)
		}
		h, err := s.Provider.Machine(spec, outputs)
		if err != nil {
			return nil, fmt.Errorf("the state of machine %s kept in the cluster: %w", n.Node, err)
		}
		// The record first: a state without its record would be taken for restored next time.
		if err := l.RecordMachine(clusterstate.MachineOf(h, spec.Index, spec.Settings)); err != nil {
			return nil, err
		}
		if err := l.SaveTerraformState(n.Node, n.State); err != nil {
			return nil, err
		}
		restored = append(restored, n.Node)
	}
	return restored, nil
}

func fill(l *clusterstate.Local, step string, state []byte) error {
	have, err := l.TerraformState(step)
	if err != nil || len(have) > 0 {
		return err
	}
	return l.SaveTerraformState(step, state)
}

// specOfState is the spec of the machine a kept state belongs to: the configuration's, when it
// still asks for the machine; otherwise one made from the Secret (its group, its settings then)
// and the index every layout ends a machine's name with ("<prefix>-<group>-<index>").
func specOfState(n clusterstate.NodeState, specs []NodeSpec) (NodeSpec, error) {
	for _, spec := range specs {
		if spec.Name == n.Node {
			if len(n.Settings) > 0 {
				spec.Settings = n.Settings
			}
			return spec, nil
		}
	}
	i := strings.LastIndex(n.Node, "-")
	index, err := strconv.Atoi(n.Node[i+1:])
	if i < 0 || err != nil || index < 0 || n.NodeGroup == "" {
		return NodeSpec{}, fmt.Errorf("machine %s (state kept in the cluster) is not one the configuration asks for, and its name and labels do not say its node group and replica index: put its group back in the configuration", n.Node)
	}
	spec := NodeSpec{Name: n.Node, NodeGroup: n.NodeGroup, Index: index, Role: inventory.Worker, Step: StaticNode, Settings: n.Settings, Leftover: true}
	if n.NodeGroup == config.MasterNodeGroup {
		spec.Role, spec.Step = inventory.Master, MasterNode
	}
	return spec, nil
}
