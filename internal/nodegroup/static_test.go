package nodegroup

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

func doc(kind, name string, labels map[string]any, spec map[string]any) config.Document {
	meta := map[string]any{"name": name}
	if labels != nil {
		meta["labels"] = labels
	}
	return config.Document{File: "c.yml", Index: 3, Kind: kind, Name: name,
		Object: map[string]any{"apiVersion": "deckhouse.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}}
}

func TestStaticMachines(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n"))
	creds := doc(KindSSHCredentials, "root", nil, map[string]any{"user": "root", "privateSSHKey": key, "sudoPasswordEncoded": base64.StdEncoding.EncodeToString([]byte("pw"))})
	docs := []config.Document{
		doc(KindStaticInstance, "b", map[string]any{"role": "worker"}, map[string]any{"address": "10.0.0.2", "credentialsRef": map[string]any{"kind": "SSHCredentials", "name": "root"}}),
		doc(KindStaticInstance, "a", nil, map[string]any{"address": "10.0.0.1", "credentialsRef": map[string]any{"name": "root"}}),
		creds,
		doc("Namespace", "other", nil, nil),
	}
	instances, c, err := StaticMachines(docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(instances) != 2 || instances[0].Name != "a" || instances[1].Labels["role"] != "worker" || instances[1].Address != "10.0.0.2" {
		t.Errorf("instances %+v", instances)
	}
	if got := c["root"]; got.User != "root" || !strings.HasPrefix(string(got.PrivateKey), "-----BEGIN") || got.SudoPassword != "pw" {
		t.Errorf("credentials %+v", got)
	}

	for _, tc := range []struct {
		docs []config.Document
		want string
	}{
		{[]config.Document{doc(KindStaticInstance, "x", nil, map[string]any{"address": "host.example", "credentialsRef": map[string]any{"name": "root"}}), creds},
			`c.yml document 3 (StaticInstance x): spec.address: "host.example" is not an IP address (give the machine's IP address)`},
		{[]config.Document{doc(KindStaticInstance, "x", nil, map[string]any{"address": "10.0.0.1", "credentialsRef": map[string]any{"name": "nobody"}}), creds},
			`StaticInstance x: spec.credentialsRef.name: SSHCredentials "nobody" is not among the documents`},
		{[]config.Document{doc(KindSSHCredentials, "k", nil, map[string]any{"user": "root", "privateSSHKey": "not base64!"})},
			"spec.privateSSHKey: is missing or not base64"},
		{[]config.Document{doc(KindSSHCredentials, "k", nil, map[string]any{"privateSSHKey": key})}, "spec.user: is missing"},
	} {
		_, _, err := StaticMachines(tc.docs)
		var de *DocumentError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the key: %v", err)
		}
	}
}

func staticNode(name, group, ip string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{config.NodeGroupLabel: group}}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	return n
}

func TestPlanStatic(t *testing.T) {
	two := 2
	g := config.NodeGroup{Metadata: config.ObjectMeta{Name: "worker"}, Spec: config.NodeGroupSpec{NodeType: config.NodeTypeStatic,
		StaticInstances: &config.StaticInstances{Count: &two, LabelSelector: &config.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}}}
	w := map[string]string{"role": "worker"}
	instances := []StaticInstance{
		{Name: "si-1", Labels: w, Address: "10.0.0.1"},
		{Name: "si-2", Labels: w, Address: "10.0.0.2"},
		{Name: "si-3", Labels: w, Address: "10.0.0.3"},
		{Name: "si-db", Labels: map[string]string{"role": "db"}, Address: "10.0.0.9"},
	}
	nodes := []corev1.Node{
		staticNode("n1", "worker", "10.0.0.1"),
		staticNode("n3", "worker", "10.0.0.3"),    // on an instance beyond the count: removed
		staticNode("hand", "worker", "10.0.0.50"), // joined by hand: never removed
		staticNode("db", "worker", "10.0.0.9"),    // its instance no longer matches: removed
	}
	p, ok := PlanStatic(g, instances, nodes)
	if !ok || len(p.Create) != 1 || p.Create[0].Name != "si-2" {
		t.Errorf("create %+v", p.Create)
	}
	if len(p.Remove) != 2 || p.Remove[0].Node != "n3" || p.Remove[1].Node != "db" {
		t.Errorf("remove %+v", p.Remove)
	}

	// Fewer matching instances than the count: all of them, and a warning.
	five := 5
	g.Spec.StaticInstances.Count = &five
	p, _ = PlanStatic(g, instances, nodes)
	if len(p.Create) != 1 || len(p.Remove) != 1 || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "wants 5 static nodes but only 3") {
		t.Errorf("plan %+v", p)
	}

	// An instance that is another group's node is not taken.
	g.Spec.StaticInstances.Count = &two
	p, _ = PlanStatic(g, instances, []corev1.Node{staticNode("n1", "front", "10.0.0.1")})
	if len(p.Create) != 1 || p.Create[0].Name != "si-2" || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `of group "front"`) {
		t.Errorf("plan %+v", p)
	}

	// Not a Static group with staticInstances: nothing.
	if _, ok := PlanStatic(config.NodeGroup{Spec: config.NodeGroupSpec{NodeType: config.NodeTypeStatic}}, instances, nodes); ok {
		t.Error("a group without staticInstances was planned")
	}
}

// Drain against a real API server: a DaemonSet's pod and a static pod stay; a pod its
// PodDisruptionBudget protects is not evicted, and the bounded drain names it and why.
func TestDrainNamesWhatBlocksIt(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	k, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := k.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller manager: the default ServiceAccount its controller makes is made here.
	if _, err := k.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, labels, annotations map[string]string, owners []metav1.OwnerReference) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels, Annotations: annotations, OwnerReferences: owners},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		created, err := k.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Running and Ready, as its kubelet would report: a Pending pod is evicted regardless
		// of its budget.
		created.Status.Phase = corev1.PodRunning
		created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := k.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("ds", nil, nil, []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "u1"}})
	pod("static", nil, map[string]string{corev1.MirrorPodAnnotationKey: "x"}, nil)
	pod("db", map[string]string{"app": "db"}, nil, nil)
	pod("web", nil, nil, nil) // evicted, then terminating for want of a kubelet
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	if _, err := k.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Cordon(ctx, k, "n1"); err != nil {
		t.Fatal(err)
	}
	if n, _ := k.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); !n.Spec.Unschedulable {
		t.Error("the node is not cordoned")
	}
	err = Drain(ctx, k, "n1", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "default/db (its PodDisruptionBudget allows no disruption now)") ||
		!strings.Contains(err.Error(), "default/web (") || strings.Contains(err.Error(), "default/ds") || strings.Contains(err.Error(), "default/static") {
		t.Fatalf("drain: %v", err)
	}
	// The same pod evicted on a node whose kubelet no longer reports: it cannot finish
	// terminating until the Node is deleted, so it does not hold the drain.
	if err := k.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n1, err := k.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}
	if _, err := k.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Drain(ctx, k, "n1", 20*time.Second); err != nil {
		t.Fatalf("drain of the lost node: %v", err)
	}
	for _, name := range []string{"db", "web"} {
		if p, err := k.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp == nil {
			t.Errorf("pod %s after the lost node's drain: %v, want it evicted (terminating)", name, err)
		}
	}
}
