package config

import (
	"encoding/json"
	"sort"
)

// NodeGroupLabel is the label every node carries with the name of its node group.
const NodeGroupLabel = "node.deckhouse.io/group"

// The node groups of the machines a bootstrap is given by flags: masters belong to "master",
// workers (--worker-host) to "worker".
const (
	MasterNodeGroup = "master"
	WorkerNodeGroup = "worker"
)

// MasterNodeTemplate is what control-plane nodes carry unless a NodeGroup "master" document says
// otherwise (Deckhouse's master group).
func MasterNodeTemplate() NodeTemplate {
	return NodeTemplate{
		Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""},
		Taints: []Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}},
	}
}

// NodeTemplateOf is the nodeTemplate of a node group: its NodeGroup document's, else its entry's
// in a cloud provider's nodeGroups, else for "master" MasterNodeTemplate; empty otherwise.
func (c *Cluster) NodeTemplateOf(group string) NodeTemplate {
	for _, ng := range c.NodeGroups {
		if ng.Metadata.Name == group {
			if ng.Spec.NodeTemplate == nil {
				return NodeTemplate{}
			}
			return *ng.Spec.NodeTemplate
		}
	}
	if c.ProviderClusterConfiguration != nil {
		entries, _ := c.ProviderClusterConfiguration.Object["nodeGroups"].([]any)
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			if name, _ := entry["name"].(string); name != group {
				continue
			}
			var t NodeTemplate
			if raw, ok := entry["nodeTemplate"]; ok {
				if js, err := json.Marshal(raw); err == nil {
					_ = json.Unmarshal(js, &t) // the provider's schema checked its shape
				}
			}
			return t
		}
	}
	if group == MasterNodeGroup {
		return MasterNodeTemplate()
	}
	return NodeTemplate{}
}

// SortedLabels returns the template's label keys, sorted.
func (t NodeTemplate) SortedLabels() []string {
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
