package install

import (
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// masterNodeGroup is the control-plane NodeGroup dhctl always creates, unless the configuration
// has its own "master".
func masterNodeGroup(clusterType string) *unstructured.Unstructured {
	nodeType := config.NodeTypeStatic
	if clusterType == config.ClusterTypeCloud {
		nodeType = config.NodeTypeCloudPermanent
	}
	var template map[string]any
	if js, err := json.Marshal(config.MasterNodeTemplate()); err == nil {
		_ = json.Unmarshal(js, &template)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "deckhouse.io/v1",
		"kind":       "NodeGroup",
		"metadata":   map[string]any{"name": config.MasterNodeGroup},
		"spec": map[string]any{
			"nodeType":     nodeType,
			"disruptions":  map[string]any{"approvalMode": "Manual"},
			"nodeTemplate": template,
		},
	}}
}

// documentsOfKind turns the configuration's documents of one kind into objects, with the
// defaults the schemas applied.
func documentsOfKind(c *config.Cluster, kind string) ([]*unstructured.Unstructured, error) {
	return objectsOf(c.Documents, kind)
}

// objectsOf turns the documents of the given kinds into objects.
func objectsOf(docs []config.Document, kinds ...string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, d := range docs {
		if !slices.Contains(kinds, d.Kind) {
			continue
		}
		obj, err := documentObject(d)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, nil
}

// documentObject converts a loaded document to an object through JSON, so that every number
// and map has the types the Kubernetes machinery expects.
func documentObject(d config.Document) (*unstructured.Unstructured, error) {
	js, err := json.Marshal(d.Object)
	if err != nil {
		return nil, fmt.Errorf("%s document %d (%s %s): %w", d.File, d.Index, d.Kind, d.Name, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("%s document %d (%s %s): %w", d.File, d.Index, d.Kind, d.Name, err)
	}
	if d.APIVersion != "" {
		obj.SetAPIVersion(d.APIVersion)
	}
	if d.Kind != "" {
		obj.SetKind(d.Kind)
	}
	return obj, nil
}

// StaticMachineObjects are configuration c's StaticInstance and SSHCredentials objects (among
// its resources).
func StaticMachineObjects(c *config.Cluster) ([]*unstructured.Unstructured, error) {
	return objectsOf(c.Resources, "SSHCredentials", "StaticInstance")
}

// NodeGroups are the NodeGroup objects configuration c makes: its NodeGroup documents, a cloud
// provider's nodeGroups entries, and the master group unless c has its own.
func NodeGroups(c *config.Cluster) ([]*unstructured.Unstructured, error) {
	groups, err := documentsOfKind(c, config.KindNodeGroup)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		if g.GetName() == "master" {
			return groups, nil
		}
	}
	groups = append(groups, cloudNodeGroups(c)...)
	return append([]*unstructured.Unstructured{masterNodeGroup(c.ClusterConfiguration.ClusterType)}, groups...), nil
}

// cloudNodeGroups are the NodeGroups of a cloud cluster's provider nodeGroups entries (the
// configuration refuses a NodeGroup document of the same name): CloudPermanent, since dhctl
// makes and converges their machines, disruptions approved by hand as for the masters, and the
// entry's nodeTemplate.
func cloudNodeGroups(c *config.Cluster) []*unstructured.Unstructured {
	if c.ClusterConfiguration.ClusterType != config.ClusterTypeCloud || c.ProviderClusterConfiguration == nil {
		return nil
	}
	entries, _ := c.ProviderClusterConfiguration.Object["nodeGroups"].([]any)
	var out []*unstructured.Unstructured
	for _, e := range entries {
		entry, ok := e.(map[string]any)
		name, _ := entry["name"].(string)
		if !ok || name == "" {
			continue // the provider's schema requires a name: not reached with a loaded configuration
		}
		spec := map[string]any{
			"nodeType":    config.NodeTypeCloudPermanent,
			"disruptions": map[string]any{"approvalMode": "Manual"},
		}
		if t, ok := entry["nodeTemplate"].(map[string]any); ok && len(t) > 0 {
			spec["nodeTemplate"] = runtimeCopy(t)
		}
		out = append(out, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "deckhouse.io/v1",
			"kind":       "NodeGroup",
			"metadata":   map[string]any{"name": name},
			"spec":       spec,
		}})
	}
	return out
}

// runtimeCopy is v with the types the Kubernetes machinery expects (through JSON), and shares
// nothing with the loaded configuration.
func runtimeCopy(v map[string]any) map[string]any {
	js, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out map[string]any
	if json.Unmarshal(js, &out) != nil {
		return nil
	}
	return out
}
