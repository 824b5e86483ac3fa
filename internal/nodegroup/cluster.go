package nodegroup

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
)

// Resource is where NodeGroups are served (the CRD install creates, Deckhouse's).
func Resource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "deckhouse.io", Version: "v1", Resource: "nodegroups"}
}

// callTimeout bounds each API call here.
const callTimeout = time.Minute

// ReadGroups returns the cluster's NodeGroups by name, decoded as configuration documents are.
// A cluster without the NodeGroup CRD has none.
func ReadGroups(ctx context.Context, dyn dynamic.Interface) (map[string]config.NodeGroup, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := dyn.Resource(Resource()).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]config.NodeGroup{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the NodeGroups: %w", err)
	}
	out := make(map[string]config.NodeGroup, len(list.Items))
	for _, item := range list.Items {
		g, err := Decode(&item)
		if err != nil {
			return nil, err
		}
		out[g.Metadata.Name] = g
	}
	return out, nil
}

// Decode reads a NodeGroup object.
func Decode(obj *unstructured.Unstructured) (config.NodeGroup, error) {
	var g config.NodeGroup
	js, err := obj.MarshalJSON()
	if err == nil {
		err = json.Unmarshal(js, &g)
	}
	if err != nil {
		return config.NodeGroup{}, fmt.Errorf("NodeGroup %s: %w", obj.GetName(), err)
	}
	return g, nil
}

// Template is the nodeTemplate of g (empty when it has none).
func Template(g config.NodeGroup) config.NodeTemplate {
	if g.Spec.NodeTemplate == nil {
		return config.NodeTemplate{}
	}
	return *g.Spec.NodeTemplate
}

// NodePlan is what a node needs for its group's template.
type NodePlan struct {
	Node    string   `json:"node"`
	Group   string   `json:"group"`
	Ready   bool     `json:"ready"`
	Changes []Change `json:"changes,omitempty"`
	// Record: only the last-applied record is missing or stale (no visible change).
	Record bool `json:"-"`
}

// InSync reports whether the node carries its template.
func (p NodePlan) InSync() bool { return len(p.Changes) == 0 }

// PlanNodes is, for every node, what its group's template changes on it (sorted by group, then
// node). A node of no group, or of a group without a NodeGroup, gets no changes: nothing says
// what it should carry.
func PlanNodes(groups map[string]config.NodeGroup, nodes []corev1.Node) []NodePlan {
	out := make([]NodePlan, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		p := NodePlan{Node: n.Name, Group: GroupOf(n), Ready: Ready(n)}
		if g, ok := groups[p.Group]; ok {
			_, p.Changes, p.Record = Reconcile(MetaOf(n), Template(g))
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Node < out[j].Node
	})
	return out
}

// Ready reports a node's Ready condition.
func Ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ListNodes returns the cluster's nodes.
func ListNodes(ctx context.Context, k kubernetes.Interface) ([]corev1.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := k.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes: %w", err)
	}
	return list.Items, nil
}

// Sync applies template t to node name and returns what changed. The node is read, reconciled
// and written back with the resourceVersion read; a write that conflicts with another is done
// again from a fresh read.
func Sync(ctx context.Context, k kubernetes.Interface, name string, t config.NodeTemplate) ([]Change, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	nodes := k.CoreV1().Nodes()
	var changes []Change
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next, ch, recorded := Reconcile(MetaOf(n), t)
		changes = ch
		if len(ch) == 0 && !recorded {
			return nil
		}
		n.Labels, n.Annotations, n.Spec.Taints = next.Labels, next.Annotations, next.Taints
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{FieldManager: kube.FieldManager})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("applying the nodeTemplate to node %s: %w", name, err)
	}
	return changes, nil
}

// Status is a NodeGroup's status as Deckhouse reports it: how many nodes it has, how many are
// Ready, how many carry its current template.
type Status struct {
	Nodes    int `json:"nodes"`
	Ready    int `json:"ready"`
	UpToDate int `json:"upToDate"`
}

// StatusOf counts plans of each group (after Sync, plans made afresh).
func StatusOf(plans []NodePlan) map[string]Status {
	out := map[string]Status{}
	for _, p := range plans {
		s := out[p.Group]
		s.Nodes++
		if p.Ready {
			s.Ready++
		}
		if p.InSync() {
			s.UpToDate++
		}
		out[p.Group] = s
	}
	return out
}

// WriteStatus sets the status of NodeGroup group (its status subresource, under dhctl's field
// manager; other status fields are kept).
func WriteStatus(ctx context.Context, dyn dynamic.Interface, group string, s Status) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	patch, err := json.Marshal(map[string]any{"status": s})
	if err != nil {
		return err
	}
	_, err = dyn.Resource(Resource()).Patch(ctx, group, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager}, "status")
	if err != nil {
		return fmt.Errorf("writing the status of NodeGroup %s: %w", group, err)
	}
	return nil
}

// SyncAllOptions tune SyncAll.
type SyncAllOptions struct {
	// Before is called before each node is synced; its error stops SyncAll there (a lost lock,
	// a cancelled run).
	Before func() error
	// Changed is told what changed on each node that changed.
	Changed func(node, group string, changes []Change)
}

// SyncAll gives every node of a group in groups its template, then writes each group's status
// (counted afresh). Nodes of no group, or of a group not in groups, are left alone.
func SyncAll(ctx context.Context, k kubernetes.Interface, dyn dynamic.Interface, groups map[string]config.NodeGroup, o SyncAllOptions) (updated int, err error) {
	nodes, err := ListNodes(ctx, k)
	if err != nil {
		return 0, err
	}
	for _, p := range PlanNodes(groups, nodes) {
		g, ok := groups[p.Group]
		if !ok {
			continue
		}
		if o.Before != nil {
			if err := o.Before(); err != nil {
				return updated, err
			}
		}
		// Every node of a known group is synced, not only those planned to change: one
		// without the record of its template gets one, and a change made since is caught.
		changes, err := Sync(ctx, k, p.Node, Template(g))
		if err != nil {
			return updated, err
		}
		if len(changes) > 0 {
			updated++
			if o.Changed != nil {
				o.Changed(p.Node, p.Group, changes)
			}
		}
	}
	if nodes, err = ListNodes(ctx, k); err != nil {
		return updated, err
	}
	status := StatusOf(PlanNodes(groups, nodes))
	for name := range groups {
		if err := WriteStatus(ctx, dyn, name, status[name]); err != nil {
			return updated, err
		}
	}
	return updated, nil
}
