package clusterstate

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// The objects of the in-cluster state, under Deckhouse's names and keys (a Deckhouse installed
// later reads them; converge and destroy read them through Read).
const (
	ConfigNamespace = "kube-system"
	StateNamespace  = "d8-system"

	ClusterConfigurationSecret    = "d8-cluster-configuration"
	ClusterConfigurationKey       = "cluster-configuration.yaml"
	MaxUsedControlPlaneVersionKey = "maxUsedControlPlaneKubernetesVersion"

	ProviderConfigurationSecret = "d8-provider-cluster-configuration"
	ProviderConfigurationKey    = "cloud-provider-cluster-configuration.yaml"
	ProviderDiscoveryDataKey    = "cloud-provider-discovery-data.json"

	StaticConfigurationSecret = "d8-static-cluster-configuration"
	StaticConfigurationKey    = "static-cluster-configuration.yaml"

	// InitConfigurationSecret is dhctl's own (Deckhouse joins nodes from inside the cluster and
	// keeps no InitConfiguration): the registry a node joined later pulls from, for a converge
	// run without the bootstrap's --config. It holds the registry's credentials.
	InitConfigurationSecret = "d8-dhctl-init-configuration"
	InitConfigurationKey    = "init-configuration.yaml"

	UUIDConfigMap = "d8-cluster-uuid"
	UUIDKey       = "cluster-uuid"

	BaseInfraStateSecret = "d8-cluster-terraform-state"
	BaseInfraStateKey    = "cluster-tf-state.json"

	NodeStateSecretPrefix = "d8-node-terraform-state-"
	NodeStateKey          = "node-tf-state.json"
	NodeGroupSettingsKey  = "node-group-settings.json"

	LabelHeritage       = "heritage"
	LabelNodeGroup      = "node.deckhouse.io/node-group"
	LabelNodeName       = "node.deckhouse.io/node-name"
	LabelTerraformState = "node.deckhouse.io/terraform-state"
)

// NodeState is one node's infrastructure state, kept in the cluster for converge and destroy.
type NodeState struct {
	Node      string
	NodeGroup string
	State     []byte // Terraform state JSON (secret)
	Settings  []byte // the node group's settings the node was created with (JSON), optional
}

// Infra is a cloud cluster's infrastructure states and the provider's discovery data (all
// secret); empty for a static cluster.
type Infra struct {
	Base          []byte // the base infrastructure's Terraform state
	Nodes         []NodeState
	DiscoveryData []byte // JSON
}

// Contents is what the in-cluster state holds.
type Contents struct {
	Cluster *config.Cluster
	UUID    string // lower-case UUID (Local.ClusterUUID)
	Infra   Infra
}

// Objects are the Secrets and ConfigMap of the in-cluster state, ready to be server-side
// applied.
func Objects(c Contents) ([]*unstructured.Unstructured, error) {
	if !uuidPattern.MatchString(c.UUID) {
		return nil, fmt.Errorf("cluster UUID %q is not a lower-case UUID (it comes from the state dir; was it edited?)", c.UUID)
	}
	if c.Cluster == nil {
		return nil, fmt.Errorf("no configuration to store in %s/%s", ConfigNamespace, ClusterConfigurationSecret)
	}
	out, err := ConfigObjects(c.Cluster, c.Infra.DiscoveryData)
	if err != nil {
		return nil, err
	}
	out = append(out, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": UUIDConfigMap, "namespace": ConfigNamespace, "labels": map[string]any{LabelHeritage: "deckhouse"}},
		"data":     map[string]any{UUIDKey: c.UUID},
	}})
	if len(c.Infra.Base) > 0 {
		out = append(out, BaseStateObject(c.Infra.Base))
	}
	for _, n := range c.Infra.Nodes {
		if n.Node == "" || len(n.State) == 0 {
			return nil, fmt.Errorf("node terraform state: want a node name and a state (got node %q, %d bytes)", n.Node, len(n.State))
		}
		out = append(out, NodeStateObject(n))
	}
	return out, nil
}

// ConfigObjects are the Secrets holding configuration c's documents (cluster, provider with the
// provider's discovery data, static, init): what the bootstrap stores, and what a converge with
// --config stores again, so that a converge without it plans from the same configuration.
func ConfigObjects(c *config.Cluster, discovery []byte) ([]*unstructured.Unstructured, error) {
	if c == nil {
		return nil, fmt.Errorf("no configuration to store in %s/%s", ConfigNamespace, ClusterConfigurationSecret)
	}
	heritage := map[string]string{LabelHeritage: "deckhouse"}
	clusterCfg, err := documentYAML(c, config.KindClusterConfiguration)
	if err != nil {
		return nil, err
	}
	if clusterCfg == nil {
		return nil, fmt.Errorf("no ClusterConfiguration document to store in %s/%s", ConfigNamespace, ClusterConfigurationSecret)
	}
	out := []*unstructured.Unstructured{
		secret(ConfigNamespace, ClusterConfigurationSecret, heritage, map[string][]byte{
			ClusterConfigurationKey:       clusterCfg,
			MaxUsedControlPlaneVersionKey: []byte(c.KubernetesVersion),
		}),
	}
	if p := c.ProviderClusterConfiguration; p != nil {
		y, err := sigsyaml.Marshal(p.Object)
		if err != nil {
			return nil, err
		}
		data := map[string][]byte{ProviderConfigurationKey: y}
		if len(discovery) > 0 {
			data[ProviderDiscoveryDataKey] = discovery
		}
		out = append(out, secret(ConfigNamespace, ProviderConfigurationSecret, heritage, data))
	}
	if c.StaticClusterConfiguration != nil {
		y, err := documentYAML(c, config.KindStaticClusterConfiguration)
		if err != nil {
			return nil, err
		}
		out = append(out, secret(ConfigNamespace, StaticConfigurationSecret, heritage, map[string][]byte{StaticConfigurationKey: y}))
	}
	if c.InitConfiguration != nil {
		y, err := documentYAML(c, config.KindInitConfiguration)
		if err != nil {
			return nil, err
		}
		out = append(out, secret(StateNamespace, InitConfigurationSecret, heritage, map[string][]byte{InitConfigurationKey: y}))
	}
	return out, nil
}

// BaseStateObject is the Secret of the base infrastructure's state (converge writes it after
// the base step changes).
func BaseStateObject(state []byte) *unstructured.Unstructured {
	return secret(StateNamespace, BaseInfraStateSecret,
		map[string]string{LabelHeritage: "deckhouse", "name": BaseInfraStateSecret},
		map[string][]byte{BaseInfraStateKey: state})
}

// NodeStateObject is the Secret of one node's infrastructure state (converge writes it after
// every node step).
func NodeStateObject(n NodeState) *unstructured.Unstructured {
	data := map[string][]byte{NodeStateKey: n.State}
	if len(n.Settings) > 0 {
		data[NodeGroupSettingsKey] = n.Settings
	}
	return secret(StateNamespace, NodeStateSecretPrefix+n.Node, map[string]string{
		LabelHeritage:       "deckhouse",
		LabelNodeGroup:      n.NodeGroup,
		LabelNodeName:       n.Node,
		LabelTerraformState: "",
	}, data)
}

func documentYAML(c *config.Cluster, kind string) ([]byte, error) {
	for _, d := range c.Documents {
		if d.Kind == kind {
			return sigsyaml.Marshal(d.Object)
		}
	}
	return nil, nil
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

// Snapshot is the in-cluster state as read at one moment. A part the cluster does not have is
// empty (a static cluster has no provider configuration and no infrastructure states).
type Snapshot struct {
	UUID                                 string
	ClusterConfiguration                 []byte // YAML document
	MaxUsedControlPlaneKubernetesVersion string
	ProviderClusterConfiguration         []byte // YAML document
	ProviderDiscoveryData                []byte // JSON
	StaticClusterConfiguration           []byte // YAML document
	InitConfiguration                    []byte // YAML document (secret: registry credentials)
	BaseInfraState                       []byte // Terraform state JSON
	Nodes                                []NodeState
}

// ConfigDocuments are the stored configuration documents as one multi-document YAML stream, the
// form config.Load reads (cluster, then provider, then static, then init configuration).
func (s *Snapshot) ConfigDocuments() []byte {
	var b bytes.Buffer
	for _, d := range [][]byte{s.ClusterConfiguration, s.ProviderClusterConfiguration, s.StaticClusterConfiguration, s.InitConfiguration} {
		if len(bytes.TrimSpace(d)) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		b.Write(d)
		if !bytes.HasSuffix(d, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Node returns the state of one node.
func (s *Snapshot) Node(name string) (NodeState, bool) {
	for _, n := range s.Nodes {
		if n.Node == name {
			return n, true
		}
	}
	return NodeState{}, false
}

// NoClusterStateError says the cluster has no d8-cluster-configuration: dhctl did not install it
// (or the state was removed).
type NoClusterStateError struct{ Host string }

func (e *NoClusterStateError) Error() string {
	return fmt.Sprintf("the cluster at %s has no %s/%s Secret: it was not bootstrapped by dhctl (or its state was deleted); nothing to read the cluster's configuration from",
		e.Host, ConfigNamespace, ClusterConfigurationSecret)
}

// readTimeout bounds the whole read: a handful of GETs and one LIST.
const readTimeout = time.Minute

// Read returns one Snapshot of the in-cluster state. host names the API server in errors.
func Read(ctx context.Context, k kubernetes.Interface, host string) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	get := func(ns, name string) (*corev1.Secret, error) {
		s, err := k.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s from %s: %w", ns, name, host, err)
		}
		return s, nil
	}
	snap := &Snapshot{}
	cc, err := get(ConfigNamespace, ClusterConfigurationSecret)
	if err != nil {
		return nil, err
	}
	if cc == nil {
		return nil, &NoClusterStateError{Host: host}
	}
	snap.ClusterConfiguration = cc.Data[ClusterConfigurationKey]
	snap.MaxUsedControlPlaneKubernetesVersion = string(cc.Data[MaxUsedControlPlaneVersionKey])
	if p, err := get(ConfigNamespace, ProviderConfigurationSecret); err != nil {
		return nil, err
	} else if p != nil {
		snap.ProviderClusterConfiguration = p.Data[ProviderConfigurationKey]
		snap.ProviderDiscoveryData = p.Data[ProviderDiscoveryDataKey]
	}
	if s, err := get(ConfigNamespace, StaticConfigurationSecret); err != nil {
		return nil, err
	} else if s != nil {
		snap.StaticClusterConfiguration = s.Data[StaticConfigurationKey]
	}
	if i, err := get(StateNamespace, InitConfigurationSecret); err != nil {
		return nil, err
	} else if i != nil {
		snap.InitConfiguration = i.Data[InitConfigurationKey]
	}
	if t, err := get(StateNamespace, BaseInfraStateSecret); err != nil {
		return nil, err
	} else if t != nil {
		snap.BaseInfraState = t.Data[BaseInfraStateKey]
	}
	cm, err := k.CoreV1().ConfigMaps(ConfigNamespace).Get(ctx, UUIDConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading ConfigMap %s/%s from %s: %w", ConfigNamespace, UUIDConfigMap, host, err)
	default:
		snap.UUID = cm.Data[UUIDKey]
	}
	list, err := k.CoreV1().Secrets(StateNamespace).List(ctx, metav1.ListOptions{LabelSelector: LabelTerraformState})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("listing node states (Secrets %s/%s*) from %s: %w", StateNamespace, NodeStateSecretPrefix, host, err)
	}
	if list != nil {
		for _, s := range list.Items {
			name := s.Labels[LabelNodeName]
			if name == "" {
				continue
			}
			snap.Nodes = append(snap.Nodes, NodeState{
				Node: name, NodeGroup: s.Labels[LabelNodeGroup],
				State: s.Data[NodeStateKey], Settings: s.Data[NodeGroupSettingsKey],
			})
		}
	}
	sort.Slice(snap.Nodes, func(i, j int) bool { return snap.Nodes[i].Node < snap.Nodes[j].Node })
	return snap, nil
}
