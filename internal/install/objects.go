package install

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// uuidPattern is the canonical textual form of a UUID.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NodeTerraformState is one node's infrastructure state, kept in the cluster for converge.
type NodeTerraformState struct {
	Node      string
	NodeGroup string
	State     []byte // terraform state JSON (secret)
	Settings  []byte // the node group's settings the node was created with (JSON), optional
}

// masterNodeGroup is the control-plane NodeGroup dhctl always creates, unless the configuration
// has its own "master".
func masterNodeGroup(clusterType string) *unstructured.Unstructured {
	nodeType := config.NodeTypeStatic
	if clusterType == config.ClusterTypeCloud {
		nodeType = config.NodeTypeCloudPermanent
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "deckhouse.io/v1",
		"kind":       "NodeGroup",
		"metadata":   map[string]any{"name": "master"},
		"spec": map[string]any{
			"nodeType":    nodeType,
			"disruptions": map[string]any{"approvalMode": "Manual"},
			"nodeTemplate": map[string]any{
				"labels": map[string]any{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""},
				"taints": []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}},
			},
		},
	}}
}

// documentsOfKind turns the configuration's documents of one kind into objects, with the
// defaults the schemas applied.
func documentsOfKind(c *config.Cluster, kind string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, d := range c.Documents {
		if d.Kind != kind {
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

func nodeGroupObjects(c *config.Cluster) ([]*unstructured.Unstructured, error) {
	groups, err := documentsOfKind(c, config.KindNodeGroup)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		if g.GetName() == "master" {
			return groups, nil
		}
	}
	return append([]*unstructured.Unstructured{masterNodeGroup(c.ClusterConfiguration.ClusterType)}, groups...), nil
}

// secret builds a Secret whose data values are given in clear (they are base64-encoded here, in
// data rather than stringData, so that re-applying an unchanged Secret is a no-op).
func secret(namespace, name string, labels map[string]string, data map[string][]byte) *unstructured.Unstructured {
	enc := map[string]any{}
	for k, v := range data {
		enc[k] = base64.StdEncoding.EncodeToString(v)
	}
	meta := map[string]any{"name": name, "namespace": namespace}
	if len(labels) > 0 {
		l := map[string]any{}
		for k, v := range labels {
			l[k] = v
		}
		meta["labels"] = l
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": enc,
	}}
}

// clusterStateObjects are the Secrets and ConfigMap Deckhouse reads its cluster's truth from,
// under Deckhouse's names and keys.
func clusterStateObjects(c *config.Cluster, uuid string, tfState []byte, nodeStates []NodeTerraformState, discovery []byte) ([]*unstructured.Unstructured, error) {
	if !uuidPattern.MatchString(uuid) {
		return nil, fmt.Errorf("cluster UUID %q is not a lower-case UUID (it comes from the state dir; was it edited?)", uuid)
	}
	heritage := map[string]string{"heritage": "deckhouse"}
	docYAML := func(kind string) ([]byte, error) {
		for _, d := range c.Documents {
			if d.Kind == kind {
				return sigsyaml.Marshal(d.Object)
			}
		}
		return nil, nil
	}
	clusterCfg, err := docYAML(config.KindClusterConfiguration)
	if err != nil {
		return nil, err
	}
	if clusterCfg == nil {
		return nil, fmt.Errorf("no ClusterConfiguration document to store in kube-system/d8-cluster-configuration")
	}
	out := []*unstructured.Unstructured{
		secret("kube-system", "d8-cluster-configuration", heritage, map[string][]byte{
			"cluster-configuration.yaml":           clusterCfg,
			"maxUsedControlPlaneKubernetesVersion": []byte(c.KubernetesVersion),
		}),
		{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "d8-cluster-uuid", "namespace": "kube-system", "labels": map[string]any{"heritage": "deckhouse"}},
			"data":     map[string]any{"cluster-uuid": uuid},
		}},
	}
	if p := c.ProviderClusterConfiguration; p != nil {
		y, err := sigsyaml.Marshal(p.Object)
		if err != nil {
			return nil, err
		}
		data := map[string][]byte{"cloud-provider-cluster-configuration.yaml": y}
		if len(discovery) > 0 {
			data["cloud-provider-discovery-data.json"] = discovery
		}
		out = append(out, secret("kube-system", "d8-provider-cluster-configuration", heritage, data))
	}
	if c.StaticClusterConfiguration != nil {
		y, err := docYAML(config.KindStaticClusterConfiguration)
		if err != nil {
			return nil, err
		}
		out = append(out, secret("kube-system", "d8-static-cluster-configuration", heritage, map[string][]byte{"static-cluster-configuration.yaml": y}))
	}
	if len(tfState) > 0 {
		out = append(out, secret("d8-system", "d8-cluster-terraform-state",
			map[string]string{"heritage": "deckhouse", "name": "d8-cluster-terraform-state"},
			map[string][]byte{"cluster-tf-state.json": tfState}))
	}
	for _, n := range nodeStates {
		if n.Node == "" || len(n.State) == 0 {
			return nil, fmt.Errorf("node terraform state: want a node name and a state (got node %q, %d bytes)", n.Node, len(n.State))
		}
		data := map[string][]byte{"node-tf-state.json": n.State}
		if len(n.Settings) > 0 {
			data["node-group-settings.json"] = n.Settings
		}
		out = append(out, secret("d8-system", "d8-node-terraform-state-"+n.Node, map[string]string{
			"heritage":                          "deckhouse",
			"node.deckhouse.io/node-group":      n.NodeGroup,
			"node.deckhouse.io/node-name":       n.Node,
			"node.deckhouse.io/terraform-state": "",
		}, data))
	}
	return out, nil
}
