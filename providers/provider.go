// Package providers is what a cloud adds to dhctl, behind one small interface: the Terraform
// providers and layouts it runs, the variables and outputs of each step, which resources are
// destructive to replace, the checks and discovery done with the cloud's own API, the recovery
// of what a killed apply made but never saved, and the cleanup of in-cluster cloud objects before
// a destroy. One package per provider (providers/vsphere, ...); a static cluster has none (see
// For). Providers never import operations.
package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// Step names of a layout's root modules (terraform/<provider>/<layout>/<step>).
const (
	BaseInfrastructure = "base-infrastructure"
	MasterNode         = "master-node"
	StaticNode         = "static-node"
)

// Provider is one cloud.
type Provider interface {
	// Name is the cloud.provider value ("vSphere").
	Name() string
	// Sources are the Terraform providers the layouts use ("hashicorp/vsphere"): the only ones
	// the engine may install from the mirror.
	Sources() []string
	// Module is a layout's root module for a step (BaseInfrastructure, MasterNode, StaticNode).
	Module(layout, step string) (fs.FS, error)
	// DestructiveTypes are resource types whose delete or replace loses data (VMs, data disks).
	DestructiveTypes() []string
	// Nodes are the machines the configuration asks for, in creation order: masters first.
	Nodes(c *config.Cluster) ([]NodeSpec, error)
	// Machine reads a node step's outputs into the machine dhctl bootstraps.
	Machine(spec NodeSpec, outputs map[string]json.RawMessage) (inventory.Host, error)
	// Preflight checks, with the cloud's API, that what the configuration names exists.
	Preflight(ctx context.Context, c *config.Cluster) error
	// Discover learns from the cloud's API what the layouts need besides the configuration; the
	// result is the discovery data kept in the cluster (d8-provider-cluster-configuration).
	Discover(ctx context.Context) (json.RawMessage, error)
	// DiscoveryVars are the step variables taken from the discovery data.
	DiscoveryVars(discovery json.RawMessage) (map[string]any, error)
	// Orphans finds what a node step made that its state does not hold (an apply killed before
	// the engine saved it) as imports to run before planning the step again.
	// uuid is the cluster's (a layout may name objects after it).
	Orphans(ctx context.Context, c *config.Cluster, uuid string, spec NodeSpec, state []byte) ([]Import, error)
}

// NodeSpec is one machine a layout makes.
type NodeSpec struct {
	Name      string // the machine's (and the step's) name: "<prefix>-master-0"
	NodeGroup string // "master" for control-plane nodes
	Index     int
	Role      inventory.Role
	Step      string // MasterNode or StaticNode
	// Settings are the node group's settings the node is made from (JSON, as the document has
	// them), kept with its state and record: a machine whose group later shrinks or goes away
	// is destroyed with them.
	Settings json.RawMessage
	// Leftover: a machine made that the configuration no longer asks for; its step is
	// Steps.Leftover.
	Leftover bool
}

// Import is one object to adopt into a step's state.
type Import struct {
	Address string // "vsphere_virtual_machine.node"
	ID      string // the provider's id of the object
}

// Factory makes a provider for a configuration (credentials, endpoints from its document).
type Factory func(c *config.Cluster) (Provider, error)

// Registry maps cloud.provider values to factories. It is built once by the command and
// passed down; nothing global.
type Registry map[string]Factory

// For is the provider of a configuration: nil for a static cluster.
func (r Registry) For(c *config.Cluster) (Provider, error) {
	cc := c.ClusterConfiguration
	if cc.ClusterType != config.ClusterTypeCloud || cc.Cloud == nil {
		return nil, nil
	}
	f, ok := r[cc.Cloud.Provider]
	if !ok {
		var known []string
		for k := range r {
			known = append(known, k)
		}
		return nil, fmt.Errorf("ClusterConfiguration cloud.provider %q: this dhctl has no such provider (it has: %v)", cc.Cloud.Provider, known)
	}
	return f(c)
}

// Vars are a step's input variables, the same for every provider (Deckhouse's layouts take
// these names): the provider's and the cluster's documents, the UUID, and for a node its group,
// index and cloud-init user data.
func Vars(c *config.Cluster, uuid string, spec *NodeSpec, cloudConfig string) (map[string]any, error) {
	if c.ProviderClusterConfiguration == nil {
		return nil, fmt.Errorf("no provider cluster configuration document")
	}
	cc, err := documentObject(c, config.KindClusterConfiguration)
	if err != nil {
		return nil, err
	}
	v := map[string]any{
		"providerClusterConfiguration": c.ProviderClusterConfiguration.Object,
		"clusterConfiguration":         cc,
		"clusterUUID":                  uuid,
	}
	if spec != nil {
		v["nodeIndex"] = spec.Index
		v["nodeGroupName"] = spec.NodeGroup
		v["cloudConfig"] = cloudConfig
	}
	return v, nil
}

func documentObject(c *config.Cluster, kind string) (map[string]any, error) {
	for _, d := range c.Documents {
		if d.Kind == kind {
			return d.Object, nil
		}
	}
	return nil, fmt.Errorf("no %s document", kind)
}
