package converge

import (
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/infra"
)

// A cloud plan: in sync only when every step is; each step's status says what happens to its
// node (named as its machine): made → created, replaced → replaced, no longer wanted → deleted,
// made without a node (an interrupted join) → created; what is destructive is listed once for
// the confirmation, per node; the first master is never replaced nor removed.
func TestCloudPlan(t *testing.T) {
	p := Plan{Cluster: "c", Infrastructure: []InfraAction{
		{Step: "base-infrastructure", Status: InfraInSync},
		{Step: "c-master-0", Group: "master", Status: InfraInSync},
	}, Nodes: []NodeAction{
		{Node: "c-master-0", Group: "master", Action: ActionNone, Exists: true},
		{Node: "c-worker-0", Group: "worker", Action: ActionNone, Exists: true},
		{Node: "c-worker-1", Group: "worker", Action: ActionNone, Exists: true},
		{Node: "c-worker-2", Group: "worker", Action: ActionNone, Exists: true},
	}}
	recorded := map[string]clusterstate.Machine{
		"c-master-0": {Name: "c-master-0", NodeGroup: "master", Role: "master", IP: "10.0.0.1", SSH: "192.0.2.1"},
		"c-worker-1": {Name: "c-worker-1", NodeGroup: "worker", Role: "worker", IP: "10.0.0.3"},
		"c-worker-2": {Name: "c-worker-2", NodeGroup: "worker", Role: "worker", IP: "10.0.0.4"},
		"c-worker-4": {Name: "c-worker-4", NodeGroup: "worker", Role: "worker", IP: "10.0.0.6"},
	}
	o := Options{FirstMasterIP: "10.0.0.1"}
	if err := cloudNodes(o, recorded, &p); err != nil {
		t.Fatal(err)
	}
	if !p.InSync() || len(p.Destructive()) != 0 || needsMachines(p) {
		t.Fatalf("an all-InSync plan: in sync %v, destructive %v", p.InSync(), p.Destructive())
	}
	p.Infrastructure = append(p.Infrastructure,
		InfraAction{Step: "c-worker-0", Group: "worker", Status: InfraOutOfSync, Changes: []infra.Change{{Address: "vsphere_virtual_machine.node", Action: infra.Update}}},
		InfraAction{Step: "c-worker-1", Group: "worker", Status: InfraDestructive, Changes: []infra.Change{
			{Address: "vsphere_virtual_machine.node", Action: infra.Replace, Destructive: true, ReplacePaths: []string{"clone.0.template_uuid"}}}},
		InfraAction{Step: "c-worker-2", Group: "worker", Status: InfraDelete},
		InfraAction{Step: "c-worker-3", Group: "worker", Status: InfraCreate},
		InfraAction{Step: "c-worker-4", Group: "worker", Status: InfraInSync},
	)
	if err := cloudNodes(o, recorded, &p); err != nil {
		t.Fatal(err)
	}
	if p.InSync() || !needsMachines(p) || changesMasters(p) {
		t.Error("a plan with changes: in sync, or needs no machines, or changes masters")
	}
	want := map[string]string{"c-master-0": ActionNone, "c-worker-0": ActionNone, "c-worker-1": ActionReplace, "c-worker-2": ActionDelete,
		"c-worker-3": ActionCreate, "c-worker-4": ActionCreate}
	for _, n := range p.Nodes {
		if n.Action != want[n.Node] {
			t.Errorf("node %s: %s, want %s", n.Node, n.Action, want[n.Node])
		}
		delete(want, n.Node)
		if n.Node == "c-worker-2" && (n.Address != "10.0.0.4" || n.Machine != "c-worker-2" || !n.Destructive || !n.Exists) {
			t.Errorf("the node to delete: %+v", n)
		}
		if n.Node == "c-worker-4" && (n.Address != "10.0.0.6" || n.Exists) {
			t.Errorf("the machine made without a node: %+v", n)
		}
	}
	if len(want) > 0 {
		t.Errorf("nodes missing from the plan: %v", want)
	}
	d := strings.Join(p.Destructive(), "\n")
	if !strings.Contains(d, "node c-worker-1 (10.0.0.3): drained, removed from the cluster, its machine cleaned, then made again from the new settings (what is on it is lost: replace vsphere_virtual_machine.node) and joined again") ||
		!strings.Contains(d, "node c-worker-2 (10.0.0.4): drained, removed from the cluster, and the machine cleaned") || !strings.Contains(d, "then the machine destroyed") ||
		strings.Contains(d, "infrastructure c-worker") || strings.Contains(d, "c-worker-0") || strings.Contains(d, "c-worker-3") || len(p.Destructive()) != 2 {
		t.Errorf("destructive:\n%s", d)
	}
	var b strings.Builder
	p.WriteText(&b)
	for _, want := range []string{
		"infrastructure c-worker-0: OutOfSync: update vsphere_virtual_machine.node",
		"infrastructure c-worker-1: DestructiveOutOfSync: replace vsphere_virtual_machine.node (because of clone.0.template_uuid)",
		"node c-worker-3 (group worker): create (its machine made if it is not, then joined)",
		"node c-worker-2 (worker): delete (DESTRUCTIVE: machine c-worker-2, 10.0.0.4, is no longer in its group's replicas)",
		"infrastructure: 3 InSync, 1 OutOfSync, 1 DestructiveOutOfSync, 1 to create, 1 to delete",
		"nodes: 2 to create, 0 to update, 1 to replace, 1 to delete",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, b.String())
		}
	}

	// The first master's machine replaced: refused before anything, naming it.
	first := Plan{Cluster: "c", Infrastructure: []InfraAction{{Step: "c-master-0", Group: "master", Status: InfraDestructive}},
		Nodes: []NodeAction{{Node: "c-master-0", Group: "master", Action: ActionNone, Exists: true}}}
	err := cloudNodes(o, recorded, &first)
	if err == nil || !exitcode.IsUsage(err) || !strings.Contains(err.Error(), "the first master (10.0.0.1)") {
		t.Errorf("replacing the first master: %v, want a usage error naming it", err)
	}
}

// Masters whose machines are lost leave first, and only their members are left out of etcd's
// health check: another member down still refuses the plan.
func TestLostMastersLeaveFirst(t *testing.T) {
	p := Plan{Nodes: []NodeAction{
		{Node: "m2", Group: "master", Action: ActionDelete, Address: "10.0.0.2"},
		{Node: "w1", Group: "worker", Action: ActionDelete, Address: "10.0.0.9", Lost: true},
		{Node: "m3", Group: "master", Action: ActionDelete, Address: "10.0.0.3", Lost: true},
		{Node: "m4", Group: "master", Action: ActionNone, Address: "10.0.0.4", Lost: true},
	}}
	var order []string
	for _, n := range byRole(p, ActionDelete, false) {
		order = append(order, n.Node)
	}
	if got := strings.Join(order, " "); got != "w1 m3 m2" {
		t.Errorf("removal order %q, want workers, then the lost master, then the other", got)
	}
	if got := lostLeaving(p); len(got) != 1 || got[0] != "10.0.0.3" {
		t.Errorf("left out of the health check: %v, want the lost master leaving only", got)
	}
}
