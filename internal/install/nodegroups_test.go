package install

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// A cloud cluster's provider nodeGroups become CloudPermanent NodeGroups with their entry's
// nodeTemplate, after the master's; a static cluster gets none of them.
func TestCloudNodeGroups(t *testing.T) {
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{"../../examples/vsphere-cluster.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := NodeGroups(c)
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, o := range objs {
		if o.GetKind() == "NodeGroup" {
			nt, _, _ := unstructured.NestedString(o.Object, "spec", "nodeType")
			groups = append(groups, o.GetName()+" "+nt)
		}
	}
	if len(groups) != 2 || groups[0] != "master CloudPermanent" || groups[1] != "worker CloudPermanent" {
		t.Fatalf("NodeGroups = %v, want master and worker, both CloudPermanent", groups)
	}
	worker := cloudNodeGroups(c)[0]
	labels, ok := worker.Object["spec"].(map[string]any)["nodeTemplate"].(map[string]any)["labels"].(map[string]any)
	if _, has := labels["node-role.kubernetes.io/worker"]; !ok || !has {
		t.Errorf("worker's nodeTemplate = %v, want the example's label", worker.Object["spec"])
	}
	if approval := worker.Object["spec"].(map[string]any)["disruptions"].(map[string]any)["approvalMode"]; approval != "Manual" {
		t.Errorf("worker's disruptions.approvalMode = %v, want Manual", approval)
	}
	// The objects share nothing with the loaded configuration.
	labels["changed"] = "x"
	if _, leaked := cloudNodeGroups(c)[0].Object["spec"].(map[string]any)["nodeTemplate"].(map[string]any)["labels"].(map[string]any)["changed"]; leaked {
		t.Error("a NodeGroup object shares its nodeTemplate with the configuration")
	}

	static, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{"testdata/cluster.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cloudNodeGroups(static); len(got) != 0 {
		t.Errorf("a static cluster got cloud NodeGroups: %v", got)
	}
}
