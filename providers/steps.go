package providers

import (
	"encoding/json"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/infra"
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
