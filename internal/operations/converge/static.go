package converge

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
)

// planStatic adds each Static group's machines to join and nodes to remove to the plan. With no
// StaticInstance known, nothing is added or removed: the groups' counts cannot be acted on.
func planStatic(o Options, desired map[string]config.NodeGroup, nodes []corev1.Node, plan *Plan) error {
	for _, name := range sortedKeys(desired) {
		g := desired[name]
		if g.Spec.NodeType != config.NodeTypeStatic || g.Spec.StaticInstances == nil {
			continue
		}
		if o.Instances == nil {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("NodeGroup %s has staticInstances but neither --config nor the cluster has a StaticInstance (give the StaticInstance and SSHCredentials documents with --config): its nodes are neither added nor removed", name))
			continue
		}
		sp, _ := nodegroup.PlanStatic(g, o.Instances, nodes)
		plan.Warnings = append(plan.Warnings, sp.Warnings...)
		for _, in := range sp.Create {
			plan.Nodes = append(plan.Nodes, NodeAction{Node: in.Name, Group: name, Action: ActionCreate, Address: in.Address, Instance: in.Name, instance: in})
		}
		for _, r := range sp.Remove {
			if name == config.MasterNodeGroup && o.FirstMasterIP != "" && r.Instance.Address == o.FirstMasterIP {
				return exitcode.Usage(fmt.Errorf("NodeGroup master would remove node %s, the first master (%s): every node reaches the control plane through it, so it is never removed; select its StaticInstance %s among the first %d (by name) of the group's labelSelector",
					r.Node, r.Instance.Address, r.Instance.Name, countOf(g)))
			}
			i := slices.IndexFunc(plan.Nodes, func(n NodeAction) bool { return n.Node == r.Node })
			if i < 0 {
				return fmt.Errorf("node %s to remove is not among the nodes listed: the cluster changed while planning; run converge again", r.Node)
			}
			n := &plan.Nodes[i]
			n.Action, n.Changes, n.Destructive = ActionDelete, nil, true
			n.Address, n.Instance, n.instance = r.Instance.Address, r.Instance.Name, r.Instance
		}
	}
	return nil
}

func countOf(g config.NodeGroup) int {
	if g.Spec.StaticInstances == nil || g.Spec.StaticInstances.Count == nil {
		return 0
	}
	return *g.Spec.StaticInstances.Count
}
