package converge

import (
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/infra"
)

// A cloud plan: in sync only when every step is; what is destructive is listed for the
// confirmation; what this build cannot do is named, and nothing else.
func TestCloudPlan(t *testing.T) {
	p := Plan{Cluster: "c", Infrastructure: []InfraAction{
		{Step: "base-infrastructure", Status: InfraInSync},
		{Step: "c-master-0", Status: InfraInSync},
	}}
	if !p.InSync() || cloudUnsupported(p) != "" || len(p.Destructive()) != 0 {
		t.Fatalf("an all-InSync plan: in sync %v, unsupported %q, destructive %v", p.InSync(), cloudUnsupported(p), p.Destructive())
	}
	p.Infrastructure = append(p.Infrastructure,
		InfraAction{Step: "c-worker-0", Status: InfraOutOfSync, Changes: []infra.Change{{Address: "vsphere_virtual_machine.node", Action: infra.Update}}},
		InfraAction{Step: "c-worker-1", Status: InfraDestructive, Changes: []infra.Change{
			{Address: "vsphere_virtual_machine.node", Action: infra.Replace, Destructive: true, ReplacePaths: []string{"clone.0.template_uuid"}}}},
		InfraAction{Step: "c-worker-2", Status: InfraDelete},
		InfraAction{Step: "c-worker-3", Status: InfraCreate},
	)
	if p.InSync() {
		t.Error("a plan with changes is in sync")
	}
	d := strings.Join(p.Destructive(), "\n")
	if !strings.Contains(d, "infrastructure c-worker-1: replace vsphere_virtual_machine.node (what is on it is lost)") ||
		!strings.Contains(d, "infrastructure c-worker-2: the machine is destroyed") || strings.Contains(d, "c-worker-0") || strings.Contains(d, "c-worker-3") {
		t.Errorf("destructive:\n%s", d)
	}
	if got, want := cloudUnsupported(p), "replacing machine c-worker-1, removing machine c-worker-2, making machine c-worker-3"; got != want {
		t.Errorf("unsupported %q, want %q", got, want)
	}
	var b strings.Builder
	p.WriteText(&b)
	for _, want := range []string{
		"infrastructure c-worker-0: OutOfSync: update vsphere_virtual_machine.node",
		"infrastructure c-worker-1: DestructiveOutOfSync: replace vsphere_virtual_machine.node (because of clone.0.template_uuid)",
		"infrastructure: 2 InSync, 1 OutOfSync, 1 DestructiveOutOfSync, 1 to create, 1 to delete",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, b.String())
		}
	}
}
