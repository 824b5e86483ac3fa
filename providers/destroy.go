package providers

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/infra"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// Made is what the infrastructure holds according to the local state: the configuration's
// machines that have a saved state, in creation order, then those made that the configuration
// no longer asks for (a group's replicas lowered, or the group removed, without a converge),
// from their records; and whether the base infrastructure has one.
func (s Steps) Made(l *clusterstate.Local) (nodes []NodeSpec, base bool, err error) {
	specs, err := s.Provider.Nodes(s.Cluster)
	if err != nil {
		return nil, false, err
	}
	wanted := map[string]bool{clusterstate.BaseInfrastructure: true}
	for _, spec := range specs {
		wanted[spec.Name] = true
		st, err := l.TerraformState(spec.Name)
		if err != nil {
			return nil, false, err
		}
		if len(st) > 0 {
			nodes = append(nodes, spec)
		}
	}
	steps, err := l.TerraformSteps()
	if err != nil {
		return nil, false, err
	}
	machines, err := l.Machines()
	if err != nil {
		return nil, false, err
	}
	for _, name := range steps {
		if wanted[name] {
			continue
		}
		spec := NodeSpec{Name: name, Leftover: true}
		for _, m := range machines {
			if m.Name == name {
				spec = MachineSpec(m)
			}
		}
		nodes = append(nodes, spec)
	}
	st, err := l.TerraformState(clusterstate.BaseInfrastructure)
	return nodes, len(st) > 0, err
}

// MachineSpec is the spec a recorded machine was made from (its group's settings then); a
// machine the configuration no longer asks for, so its step is a Leftover.
func MachineSpec(m clusterstate.Machine) NodeSpec {
	spec := NodeSpec{Name: m.Name, NodeGroup: m.NodeGroup, Index: m.Index, Role: inventory.Role(m.Role), Step: StaticNode, Settings: m.Settings, Leftover: true}
	if spec.Role == inventory.Master {
		spec.Step = MasterNode
	}
	return spec
}

// DestroyAll destroys the machines (the last made first), then the base infrastructure. Each
// machine is forgotten once its destroy succeeded; a failure stops with the failing step's state
// kept, so a re-run goes on from there.
func (s Steps) DestroyAll(ctx context.Context, r *infra.Runner, l *clusterstate.Local, nodes []NodeSpec, base bool, out io.Writer, log *slog.Logger) error {
	for i := len(nodes) - 1; i >= 0; i-- {
		step, err := s.Node(nodes[i])
		if nodes[i].Leftover {
			step, err = s.Leftover(nodes[i])
		}
		if err != nil {
			return err
		}
		log.Info("destroying", "machine", nodes[i].Name)
		if err := r.Destroy(ctx, step); err != nil {
			return fmt.Errorf("machine %s: %w (its state is kept: run the command again)", nodes[i].Name, err)
		}
		if err := l.ForgetMachine(nodes[i].Name); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: destroyed\n", nodes[i].Name)
	}
	if !base {
		return nil
	}
	step, err := s.Base(clusterstate.BaseInfrastructure)
	if err != nil {
		return err
	}
	if err := r.Destroy(ctx, step); err != nil {
		return fmt.Errorf("base infrastructure: %w (its state is kept: run the command again)", err)
	}
	fmt.Fprintln(out, "base infrastructure: destroyed")
	return nil
}
