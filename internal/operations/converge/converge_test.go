package converge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/candi"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/install"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
	"github.com/dhctl-dev/dhctl/templates"
)

const clusterConfiguration = `apiVersion: deckhouse.io/v1
kind: ClusterConfiguration
clusterType: Static
podSubnetCIDR: 10.111.0.0/16
podSubnetNodeCIDRPrefix: "24"
serviceSubnetCIDR: 10.222.0.0/16
kubernetesVersion: "1.33"
clusterDomain: cluster.local
---
apiVersion: deckhouse.io/v1
kind: StaticClusterConfiguration
internalNetworkCIDRs: [192.168.199.0/24]
`

// workerGroup is a NodeGroup worker with a template.
func workerGroup(template string) string {
	return "---\napiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata: {name: worker}\nspec:\n  nodeType: Static\n  nodeTemplate:\n" + template
}

// loadConfig loads configuration documents as --config.
func loadConfig(t *testing.T, docs string) *config.Cluster {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, []byte(docs), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// groupsOf loads a configuration and returns its NodeGroup objects, as the command does.
func groupsOf(t *testing.T, docs string) []*unstructured.Unstructured {
	t.Helper()
	groups, err := install.NodeGroups(loadConfig(t, docs))
	if err != nil {
		t.Fatal(err)
	}
	return groups
}

// testCluster is a real API server with the NodeGroup CRD, d8-system, and nodes as kubelets
// register them: master m1, workers w1 and w2 (with the label their template had at join), and
// x1 of no group.
func testCluster(t *testing.T) *kube.Client {
	t.Helper()
	cluster := kubetest.Start(t, kubetest.Options{})
	k, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	ctx := context.Background()
	crd, err := templates.FS.ReadFile("crds/nodegroup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := sigsyaml.Unmarshal(crd, &obj.Object); err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": kube.LockNamespace}}}
	if _, err := k.ApplyAll(ctx, []*unstructured.Unstructured{obj, ns}, kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitReady(ctx, []*unstructured.Unstructured{obj}, kube.WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		name   string
		labels map[string]string
		taints []corev1.Taint
	}{
		{"m1", map[string]string{config.NodeGroupLabel: "master", "node-role.kubernetes.io/control-plane": ""},
			[]corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}},
		{"w1", map[string]string{config.NodeGroupLabel: "worker", "tier": "edge"}, nil},
		// The node controller's taint: converge must never remove it.
		{"w2", map[string]string{config.NodeGroupLabel: "worker", "tier": "edge"},
			[]corev1.Taint{{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}}},
		{"x1", map[string]string{"kubernetes.io/hostname": "x1"}, nil},
	} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels}, Spec: corev1.NodeSpec{Taints: n.taints}}
		created, err := k.Typed().CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if _, err := k.Typed().CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func options(k *kube.Client, groups []*unstructured.Unstructured, out *bytes.Buffer) Options {
	return Options{
		Name:   "test",
		Kube:   func(context.Context) (*kube.Client, error) { return k.WithCloser(func() error { return nil }), nil },
		Groups: groups,
		Out:    out,
	}
}

func nodeNamed(t *testing.T, k *kube.Client, name string) *corev1.Node {
	t.Helper()
	n, err := k.Typed().CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect, value string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key && t.Effect == effect && t.Value == value })
}

func TestConvergeAppliesNodeTemplatesAndLeavesOthersAlone(t *testing.T) {
	k := testCluster(t)
	ctx := context.Background()
	first := groupsOf(t, clusterConfiguration+workerGroup(`    labels: {tier: core, zone: a}
    annotations: {example.com/owner: team-a}
    taints: [{key: dedicated, value: db, effect: NoSchedule}]
`))
	// An operator's label, set before converge: it is nobody's template, and stays.
	w1 := nodeNamed(t, k, "w1")
	w1.Labels["ops.example.com/owner"] = "alice"
	if _, err := k.Typed().CoreV1().Nodes().Update(ctx, w1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// --check: the plan, and the drift as an error that exits 4; nothing changed.
	var out bytes.Buffer
	o := options(k, first, &out)
	o.Check = true
	plan, err := Run(ctx, o)
	if exitcode.ExitCode(err) != exitcode.Drift {
		t.Fatalf("check with drift: %v (exit %d), want exit %d", err, exitcode.ExitCode(err), exitcode.Drift)
	}
	for _, want := range []string{
		"NodeGroup master: create", "NodeGroup worker: create",
		"node w1 (worker): update: ~label tier=core (was edge), +label zone=a, +annotation example.com/owner=team-a, +taint dedicated:NoSchedule=db",
		// kubeadm labels a control-plane node only node-role.kubernetes.io/control-plane.
		"node m1 (master): update: +label node-role.kubernetes.io/master=",
		"node x1 (no group): in sync",
		"warning: node x1 has no node.deckhouse.io/group label",
		"node groups: 2 to create, 0 to update, 0 in sync; nodes: 0 to create, 3 to update, 0 to replace, 0 to delete, 1 in sync",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if plan.InSync() || nodeNamed(t, k, "w1").Labels["tier"] != "edge" {
		t.Fatal("--check changed the cluster")
	}

	// Converge: templates applied, others' labels and taints kept, status written.
	out.Reset()
	if _, err := Run(ctx, options(k, first, &out)); err != nil {
		t.Fatalf("converge: %v\n%s", err, out.String())
	}
	for _, name := range []string{"w1", "w2"} {
		n := nodeNamed(t, k, name)
		if n.Labels["tier"] != "core" || n.Labels["zone"] != "a" || n.Annotations["example.com/owner"] != "team-a" ||
			!hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule, "db") || n.Annotations[nodegroup.LastAppliedAnnotation] == "" {
			t.Errorf("node %s after converge: labels %v, annotations %v, taints %v", name, n.Labels, n.Annotations, n.Spec.Taints)
		}
	}
	if nodeNamed(t, k, "w1").Labels["ops.example.com/owner"] != "alice" {
		t.Error("converge removed an operator's label")
	}
	if !hasTaint(nodeNamed(t, k, "w2"), "node.kubernetes.io/unreachable", corev1.TaintEffectNoExecute, "") {
		t.Error("converge removed the node controller's taint")
	}
	if n := nodeNamed(t, k, "m1"); !hasTaint(n, "node-role.kubernetes.io/control-plane", corev1.TaintEffectNoSchedule, "") || n.Labels["node-role.kubernetes.io/master"] != "" {
		t.Errorf("master after converge: labels %v, taints %v", n.Labels, n.Spec.Taints)
	}
	ng, err := k.Dynamic().Resource(nodegroup.Resource()).Get(ctx, "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := unstructured.NestedMap(ng.Object, "status"); st["nodes"] != int64(2) || st["ready"] != int64(2) || st["upToDate"] != int64(2) {
		t.Errorf("NodeGroup worker status %v, want 2 nodes, 2 ready, 2 up to date", st)
	}
	if lock, err := kube.ReadLock(ctx, k.Typed()); err != nil || lock != nil {
		t.Errorf("the lock after converge: %+v, %v; want released", lock, err)
	}

	// In sync now, in JSON.
	out.Reset()
	o = options(k, first, &out)
	o.Check, o.JSON = true, true
	if _, err := Run(ctx, o); err != nil {
		t.Fatalf("check after converge: %v\n%s", err, out.String())
	}
	var decoded Plan
	if err := json.Unmarshal(out.Bytes(), &decoded); err != nil || !decoded.InSync() || len(decoded.Nodes) != 4 {
		t.Fatalf("JSON plan: %v, in sync %v, %d nodes:\n%s", err, decoded.InSync(), len(decoded.Nodes), out.String())
	}

	// The template drops zone, the annotation and the taint, and changes tier: exactly those go.
	second := groupsOf(t, clusterConfiguration+workerGroup("    labels: {tier: core}\n"))
	out.Reset()
	if _, err := Run(ctx, options(k, second, &out)); err != nil {
		t.Fatalf("second converge: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "NodeGroup worker: update (spec.nodeTemplate)") ||
		!strings.Contains(out.String(), "node w2: -label zone, -annotation example.com/owner, -taint dedicated:NoSchedule") {
		t.Errorf("second converge output:\n%s", out.String())
	}
	for _, name := range []string{"w1", "w2"} {
		n := nodeNamed(t, k, name)
		if _, ok := n.Labels["zone"]; ok || n.Annotations["example.com/owner"] != "" || hasTaint(n, "dedicated", corev1.TaintEffectNoSchedule, "db") || n.Labels["tier"] != "core" {
			t.Errorf("node %s after the second converge: labels %v, annotations %v, taints %v", name, n.Labels, n.Annotations, n.Spec.Taints)
		}
	}
	if nodeNamed(t, k, "w1").Labels["ops.example.com/owner"] != "alice" || !hasTaint(nodeNamed(t, k, "w2"), "node.kubernetes.io/unreachable", corev1.TaintEffectNoExecute, "") {
		t.Error("the second converge touched what others set")
	}

	// Without --config the cluster's NodeGroups are the desired state: edited there, applied.
	ng, err = k.Dynamic().Resource(nodegroup.Resource()).Get(ctx, "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(ng.Object, map[string]any{"tier": "core", "edited": "in-cluster"}, "spec", "nodeTemplate", "labels"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Dynamic().Resource(nodegroup.Resource()).Update(ctx, ng, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := Run(ctx, options(k, nil, &out)); err != nil {
		t.Fatalf("converge from the cluster's NodeGroups: %v\n%s", err, out.String())
	}
	if nodeNamed(t, k, "w2").Labels["edited"] != "in-cluster" {
		t.Errorf("the in-cluster NodeGroup's template was not applied:\n%s", out.String())
	}
}

func TestConvergeLock(t *testing.T) {
	k := testCluster(t)
	ctx := context.Background()
	groups := groupsOf(t, clusterConfiguration+workerGroup("    labels: {tier: core}\n"))
	other, err := kube.AcquireLock(ctx, k.Typed(), "alice@elsewhere pid 42 in pid:[1] (converge)", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = Run(ctx, options(k, groups, &out))
	var locked *kube.LockedError
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), "alice@elsewhere pid 42") {
		t.Fatalf("converge while another holds the lock: %v; want a LockedError naming the holder", err)
	}
	if nodeNamed(t, k, "w1").Labels["tier"] != "edge" {
		t.Fatal("a refused converge changed a node")
	}
	// --check takes no lock: a drift alarm works while a converge runs.
	o := options(k, groups, &out)
	o.Check = true
	if _, err := Run(ctx, o); exitcode.ExitCode(err) != exitcode.Drift {
		t.Fatalf("check while locked: %v", err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, options(k, groups, &out)); err != nil {
		t.Fatalf("converge after the lock was released: %v", err)
	}
	if nodeNamed(t, k, "w1").Labels["tier"] != "core" {
		t.Error("converge after the release did not apply the template")
	}
}

// A static worker whose machine is gone for good (unreachable, its kubelet no longer reports:
// Ready Unknown) is removed all the same once its StaticInstance is no longer selected: drained
// (its evicted pod cannot finish terminating without a kubelet, and does not hold the drain), its
// Node deleted, the machine reported NOT cleaned. The same with the node still reporting Ready
// is refused: the machine must be cleaned first, and the node stays cordoned.
func TestConvergeRemovesALostStaticNode(t *testing.T) {
	k := testCluster(t)
	ctx := context.Background()
	for name, address := range map[string]string{"w1": "192.168.199.11", "w2": "192.168.199.12"} {
		n := nodeNamed(t, k, name)
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: address}}
		if _, err := k.Typed().CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Typed().CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	groups := groupsOf(t, clusterConfiguration+workerGroup("    labels: {tier: edge}\n")+"  staticInstances: {count: 1}\n")
	d, err := state.Open(ctx, t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	converge := func() (string, error) {
		var out bytes.Buffer
		o := options(k, groups, &out)
		o.Instances = []nodegroup.StaticInstance{{Name: "si-a", Address: "192.168.199.11", Credentials: "c"}, {Name: "si-b", Address: "192.168.199.12", Credentials: "c"}}
		o.Credentials = map[string]nodegroup.SSHCredentials{"c": {Name: "c", User: "root"}}
		o.AllowDestructive = true
		o.Machines = &MachineOptions{State: clusterstate.NewLocal(d), Candi: candi.FS, DrainTimeout: 20 * time.Second,
			Connect: func(_ context.Context, in nodegroup.StaticInstance, _ nodegroup.SSHCredentials) (*ssh.Client, error) {
				return nil, errors.New("dial tcp " + in.Address + ":22: connect: no route to host")
			}}
		_, err := Run(ctx, o)
		return out.String(), err
	}

	// Still reporting: refused, cordoned, kept.
	out, err := converge()
	if err == nil || !strings.Contains(err.Error(), "cannot be reached to clean it") {
		t.Fatalf("removing a reachable-by-kubelet node whose machine cannot be reached: %v\n%s", err, out)
	}
	if n := nodeNamed(t, k, "w2"); !n.Spec.Unschedulable {
		t.Error("the node whose removal failed is not cordoned")
	}

	// Lost, with a pod that cannot finish terminating without a kubelet: removed, its machine
	// reported not cleaned.
	pod, err := k.Typed().CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "w2", Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if _, err := k.Typed().CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w2 := nodeNamed(t, k, "w2")
	w2.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}
	if _, err := k.Typed().CoreV1().Nodes().UpdateStatus(ctx, w2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = converge()
	if err != nil {
		t.Fatalf("removing a lost node: %v\n%s", err, out)
	}
	if !strings.Contains(out, "its node is lost") || !strings.Contains(out, "node w2 removed; machine 192.168.199.12 NOT cleaned") {
		t.Errorf("the removal of the lost node does not say the machine was not cleaned:\n%s", out)
	}
	if _, err := k.Typed().CoreV1().Nodes().Get(ctx, "w2", metav1.GetOptions{}); err == nil {
		t.Error("the lost node is still there")
	}
	if n := nodeNamed(t, k, "w1"); n.Spec.Unschedulable {
		t.Error("the selected worker was cordoned")
	}
}

// --config's StaticInstances and SSHCredentials are kept in the cluster by a converge; a later
// converge without --config plans from them: in sync, then (the NodeGroup's count lowered with
// kubectl) drifted, the node on the StaticInstance no longer selected to be removed.
func TestConvergeTakesStaticInstancesFromTheCluster(t *testing.T) {
	k := testCluster(t)
	ctx := context.Background()
	data, err := templates.FS.ReadFile("crds/staticinstance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crds []*unstructured.Unstructured
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		crds = append(crds, obj)
	}
	if _, err := k.ApplyAll(ctx, crds, kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitReady(ctx, crds, kube.WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for name, address := range map[string]string{"w1": "192.168.199.11", "w2": "192.168.199.12"} {
		n := nodeNamed(t, k, name)
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: address}}
		if _, err := k.Typed().CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	docs := clusterConfiguration + workerGroup("    labels: {tier: edge}\n") + "  staticInstances: {count: 2}\n" + `---
apiVersion: deckhouse.io/v1alpha1
kind: SSHCredentials
metadata: {name: c}
spec: {user: root, privateSSHKey: ` + base64.StdEncoding.EncodeToString([]byte("not a real key")) + `}
---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata: {name: si-a}
spec: {address: 192.168.199.11, credentialsRef: {kind: SSHCredentials, name: c}}
---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata: {name: si-b}
spec: {address: 192.168.199.12, credentialsRef: {kind: SSHCredentials, name: c}}
`
	c := loadConfig(t, docs)
	var out bytes.Buffer
	o := options(k, groupsOf(t, docs), &out)
	if o.Instances, o.Credentials, err = nodegroup.StaticMachines(c.Resources); err != nil {
		t.Fatal(err)
	}
	if o.StaticObjects, err = install.StaticMachineObjects(c); err != nil || len(o.StaticObjects) != 3 {
		t.Fatalf("static objects of the configuration: %v, %v", o.StaticObjects, err)
	}
	if _, err := Run(ctx, o); err != nil {
		t.Fatalf("converge with --config: %v\n%s", err, out.String())
	}
	for _, want := range []string{"SSHCredentials c applied", "StaticInstance si-a applied", "StaticInstance si-b applied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the converge does not say %q:\n%s", want, out.String())
		}
	}

	// Without --config: the cluster's NodeGroups and StaticInstances.
	check := func() (string, error) {
		var out bytes.Buffer
		o := options(k, nil, &out)
		o.Check = true
		_, err := Run(ctx, o)
		return out.String(), err
	}
	if out, err := check(); err != nil || strings.Contains(out, "warning: NodeGroup worker has staticInstances") {
		t.Fatalf("converge --check without --config after the converge: %v\n%s", err, out)
	}
	patch := []byte(`{"spec":{"staticInstances":{"count":1}}}`)
	if _, err := k.Dynamic().Resource(nodegroup.Resource()).Patch(ctx, "worker", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out2, err := check()
	if !exitcode.IsDrift(err) || !strings.Contains(out2, "node w2 (worker): delete (DESTRUCTIVE: StaticInstance si-b, 192.168.199.12, is no longer selected by its group)") {
		t.Fatalf("converge --check without --config, the count lowered: %v, want drift removing w2\n%s", err, out2)
	}
}

// --config is kept in the cluster by a converge (only the documents that changed), so that a
// converge without it plans from the same configuration; a --config that changes what the
// cluster was made with (a subnet) is refused before anything changes.
func TestConvergeKeepsConfigInTheCluster(t *testing.T) {
	k := testCluster(t)
	ctx := context.Background()
	bootstrapped := loadConfig(t, clusterConfiguration)
	objs, err := clusterstate.Objects(clusterstate.Contents{Cluster: bootstrapped, UUID: "0b7e7c3e-3d7a-4f0a-9d51-0c3a4f6f2d11"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.ApplyAll(ctx, objs, kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	converge := func(docs string) (string, error) {
		var out bytes.Buffer
		o := options(k, groupsOf(t, docs), &out)
		o.Config = loadConfig(t, docs)
		_, err := Run(ctx, o)
		return out.String(), err
	}
	stored := func() string {
		snap, err := clusterstate.Read(ctx, k.Typed(), k.Host())
		if err != nil {
			t.Fatal(err)
		}
		return string(snap.ClusterConfiguration) + string(snap.StaticClusterConfiguration)
	}
	before := stored()

	out, err := converge(strings.Replace(clusterConfiguration, "serviceSubnetCIDR: 10.222.0.0/16", "serviceSubnetCIDR: 10.223.0.0/16", 1))
	if !exitcode.IsUsage(err) || !strings.Contains(err.Error(), `ClusterConfiguration.serviceSubnetCIDR: "10.222.0.0/16" in the cluster, --config has "10.223.0.0/16"`) {
		t.Fatalf("a --config with another service subnet: %v, want a usage error naming it\n%s", err, out)
	}
	if stored() != before || strings.Contains(out, "NodeGroup master applied") {
		t.Fatal("the refused converge changed the cluster")
	}

	out, err = converge(clusterConfiguration)
	if err != nil || strings.Contains(out, "configuration kept in the cluster") {
		t.Fatalf("a converge with the stored configuration: %v, want nothing stored again\n%s", err, out)
	}
	out, err = converge(strings.Replace(clusterConfiguration, "internalNetworkCIDRs: [192.168.199.0/24]", "internalNetworkCIDRs: [192.168.199.0/24, 192.168.200.0/24]", 1))
	if err != nil || !strings.Contains(out, "configuration kept in the cluster (d8-static-cluster-configuration)") {
		t.Fatalf("a converge with another internal network: %v, want the static configuration kept\n%s", err, out)
	}
	if !strings.Contains(stored(), "192.168.200.0/24") {
		t.Errorf("the cluster keeps:\n%s", stored())
	}
}
