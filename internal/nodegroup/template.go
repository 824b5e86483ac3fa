// Package nodegroup keeps the nodes of a cluster as their NodeGroups say: the labels,
// annotations and taints of a group's nodeTemplate on every node of the group (added, changed
// and removed), and the group's status (nodes, ready, up to date).
//
// A node is changed only where its group's template speaks. What the template last put on a
// node is recorded on the node itself (LastAppliedAnnotation, Deckhouse's name), so a label,
// annotation or taint the template drops is removed, while one set by anybody else (an operator,
// another controller, the kubelet) is never touched. The write is a read-modify-update under
// dhctl's field manager with the node's resourceVersion, re-read and redone on a conflict: server-side
// apply cannot do this job alone, because a node's taints are an atomic list (applying ours would
// remove the node controller's) and the labels a kubelet registered with are co-owned by it (an
// apply that omits them would not remove them).
package nodegroup

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// LastAppliedAnnotation holds, on a node, the nodeTemplate dhctl last applied to it (JSON).
const LastAppliedAnnotation = "node-manager.deckhouse.io/last-applied-node-template"

// Meta is the part of a node a nodeTemplate governs.
type Meta struct {
	Labels      map[string]string
	Annotations map[string]string
	Taints      []corev1.Taint
}

// MetaOf is a copy of n's labels, annotations and taints.
func MetaOf(n *corev1.Node) Meta {
	return Meta{Labels: maps.Clone(n.Labels), Annotations: maps.Clone(n.Annotations), Taints: slices.Clone(n.Spec.Taints)}
}

// Change is one difference between a node and its template.
type Change struct {
	What string `json:"what"` // "label", "annotation" or "taint"
	Op   string `json:"op"`   // "add", "set" (a different value) or "remove"
	Key  string `json:"key"`  // a taint's is key:effect
	// Value is the new value ("" for a remove); Old the value replaced or removed.
	Value string `json:"value,omitempty"`
	Old   string `json:"old,omitempty"`
}

// String is the change for people: "+label a=b", "~label a=c (was b)", "-taint k:NoSchedule".
func (c Change) String() string {
	switch c.Op {
	case "add":
		return fmt.Sprintf("+%s %s=%s", c.What, c.Key, c.Value)
	case "set":
		return fmt.Sprintf("~%s %s=%s (was %s)", c.What, c.Key, c.Value, c.Old)
	default:
		return fmt.Sprintf("-%s %s", c.What, c.Key)
	}
}

// Reconcile returns cur with template t applied, and the changes that makes (none: the node is
// in sync). Only keys of t, and keys the recorded last-applied template had and t no longer
// has, are changed; a dropped key whose value someone else has since changed is left alone. The
// returned Meta records t as the last applied template; recorded reports whether that record
// itself changes (a node that registered with its group's labels has none yet).
func Reconcile(cur Meta, t config.NodeTemplate) (next Meta, changes []Change, recorded bool) {
	last := lastApplied(cur.Annotations)
	next = Meta{Labels: maps.Clone(cur.Labels), Annotations: maps.Clone(cur.Annotations), Taints: slices.Clone(cur.Taints)}
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	changes = append(changes, reconcileMap("label", next.Labels, t.Labels, last.Labels)...)
	want := maps.Clone(t.Annotations)
	delete(want, LastAppliedAnnotation) // bookkeeping, never the template's
	changes = append(changes, reconcileMap("annotation", next.Annotations, want, last.Annotations)...)
	var taintChanges []Change
	next.Taints, taintChanges = reconcileTaints(next.Taints, t.Taints, last.Taints)
	changes = append(changes, taintChanges...)

	record := Record(t)
	recorded = next.Annotations[LastAppliedAnnotation] != record
	next.Annotations[LastAppliedAnnotation] = record
	return next, changes, recorded
}

// Record is the LastAppliedAnnotation value of template t: canonical JSON (maps sorted, taints
// by key and effect), so equal templates record equal strings.
func Record(t config.NodeTemplate) string {
	c := config.NodeTemplate{Labels: t.Labels, Annotations: maps.Clone(t.Annotations), Taints: slices.Clone(t.Taints)}
	delete(c.Annotations, LastAppliedAnnotation)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(c.Annotations) == 0 {
		c.Annotations = nil
	}
	sort.Slice(c.Taints, func(i, j int) bool {
		return taintKey(c.Taints[i].Key, c.Taints[i].Effect) < taintKey(c.Taints[j].Key, c.Taints[j].Effect)
	})
	if len(c.Taints) == 0 {
		c.Taints = nil
	}
	js, _ := json.Marshal(c) // strings and maps of strings: cannot fail
	return string(js)
}

// lastApplied is the template recorded on a node; an absent or unreadable record is an empty
// template, so nothing is removed on its account (the next write records a readable one).
func lastApplied(annotations map[string]string) config.NodeTemplate {
	var t config.NodeTemplate
	if raw := annotations[LastAppliedAnnotation]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return config.NodeTemplate{}
		}
	}
	return t
}

func reconcileMap(what string, cur, want, last map[string]string) []Change {
	var out []Change
	for _, k := range sortedKeys(want) {
		old, had := cur[k]
		switch {
		case !had:
			out = append(out, Change{What: what, Op: "add", Key: k, Value: want[k]})
		case old != want[k]:
			out = append(out, Change{What: what, Op: "set", Key: k, Value: want[k], Old: old})
		default:
			continue
		}
		cur[k] = want[k]
	}
	for _, k := range sortedKeys(last) {
		if _, still := want[k]; still {
			continue
		}
		if v, ok := cur[k]; ok && v == last[k] {
			out = append(out, Change{What: what, Op: "remove", Key: k, Old: v})
			delete(cur, k)
		}
	}
	return out
}

func reconcileTaints(cur []corev1.Taint, want, last []config.Taint) ([]corev1.Taint, []Change) {
	var out []Change
	index := func(key, effect string) int {
		return slices.IndexFunc(cur, func(t corev1.Taint) bool { return t.Key == key && string(t.Effect) == effect })
	}
	wanted := map[string]bool{}
	for _, w := range want {
		k := taintKey(w.Key, w.Effect)
		wanted[k] = true
		switch i := index(w.Key, w.Effect); {
		case i < 0:
			cur = append(cur, corev1.Taint{Key: w.Key, Value: w.Value, Effect: corev1.TaintEffect(w.Effect)})
			out = append(out, Change{What: "taint", Op: "add", Key: k, Value: w.Value})
		case cur[i].Value != w.Value:
			out = append(out, Change{What: "taint", Op: "set", Key: k, Value: w.Value, Old: cur[i].Value})
			cur[i].Value = w.Value
		}
	}
	for _, l := range last {
		k := taintKey(l.Key, l.Effect)
		if wanted[k] {
			continue
		}
		if i := index(l.Key, l.Effect); i >= 0 && cur[i].Value == l.Value {
			out = append(out, Change{What: "taint", Op: "remove", Key: k, Old: l.Value})
			cur = slices.Delete(cur, i, i+1)
		}
	}
	return cur, out
}

func taintKey(key, effect string) string { return key + ":" + effect }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// GroupOf is the node group a node belongs to: its NodeGroupLabel, else "master" for a
// control-plane node; "" for a node of no group.
func GroupOf(n *corev1.Node) string {
	if g := n.Labels[config.NodeGroupLabel]; g != "" {
		return g
	}
	if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
		return config.MasterNodeGroup
	}
	return ""
}

// Summary joins changes for one line.
func Summary(changes []Change) string {
	parts := make([]string, len(changes))
	for i, c := range changes {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}
