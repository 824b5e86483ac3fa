package install

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/internal/phase"
)

const testUUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

func loadTestConfig(t *testing.T, resources bool) *config.Cluster {
	t.Helper()
	opts := config.LoadOptions{ConfigPaths: []string{"testdata/cluster.yml"}}
	if resources {
		opts.ResourcePaths = []string{"testdata/resources.yml"}
	}
	c, err := config.Load(context.Background(), opts)
	if err != nil {
		t.Fatalf("loading the test configuration: %v", err)
	}
	return c
}

func loadBenchConfig() (*config.Cluster, error) {
	return config.Load(context.Background(), config.LoadOptions{ConfigPaths: []string{"testdata/cluster.yml"}})
}

func newTestInstaller(t *testing.T, client *kube.Client, c *config.Cluster, opts Options) *Installer {
	t.Helper()
	opts.Kube, opts.Cluster, opts.VersionMap, opts.ClusterUUID = client, c, testVersionMap(t), testUUID
	in, err := New(opts)
	if err != nil {
		t.Fatalf("install.New: %v", err)
	}
	return in
}

// startCluster starts a real API server for c: CoreDNS's Service has a fixed cluster IP from
// the configuration's service subnet, so the server serves that range.
func startCluster(t *testing.T, c *config.Cluster, controllers bool) *kube.Client {
	t.Helper()
	cluster := kubetest.Start(t, kubetest.Options{Controllers: controllers, ServiceCIDR: c.ClusterConfiguration.ServiceSubnetCIDR})
	client, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// applyPhases are the phases that only apply objects (all before wait-platform).
func applyPhases(in *Installer) []phase.Phase {
	var out []phase.Phase
	for _, p := range in.Phases() {
		if p.Name() == PhaseWaitPlatform {
			break
		}
		out = append(out, p)
	}
	return out
}

func phaseNamed(t *testing.T, in *Installer, name string) phase.Phase {
	t.Helper()
	for _, p := range in.Phases() {
		if p.Name() == name {
			return p
		}
	}
	t.Fatalf("the installer has no phase %s", name)
	return nil
}

// allObjects is every object the apply phases create.
func allObjects(t *testing.T, in *Installer) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, f := range []func() ([]*unstructured.Unstructured, error){in.CNIObjects, in.DNSObjects, in.NodeGroupObjects, in.PlatformObjects, in.ClusterStateObjects} {
		objs, err := f()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, objs...)
	}
	return out
}

func resourceVersions(t *testing.T, ctx context.Context, c *kube.Client, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		live, err := c.Get(ctx, o)
		if err != nil {
			t.Fatalf("%s was not created: %v", kube.Ref(o), err)
		}
		out[kube.Ref(o)] = live.GetResourceVersion()
	}
	return out
}

// Against a real API server: every object is created, a second run changes nothing, and the
// cluster state Secrets hold what Deckhouse reads.
func TestInstallCreatesEverythingIdempotently(t *testing.T) {
	t.Parallel()
	c := loadTestConfig(t, false)
	client := startCluster(t, c, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := newTestInstaller(t, client, c, Options{InstallerVersion: "v1.2.3-test"})
	applyPhases := applyPhases(in) // all but wait-platform and release-channel: no nodes here
	// The bootstrap lock, watched from before the install: it must exist before the Deployment
	// and go only after every ModuleConfig exists.
	lockWatch, err := client.Typed().CoreV1().ConfigMaps("d8-system").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + BootstrapLockConfigMap})
	if err != nil {
		t.Fatal(err)
	}
	defer lockWatch.Stop()
	if _, err := phase.Run(ctx, applyPhases, phase.Options{}); err != nil {
		t.Fatalf("first run: %v", err)
	}
	objs := allObjects(t, in)
	first := resourceVersions(t, ctx, client, objs)
	lockEvents := map[string]int64{}
	for len(lockEvents) < 2 {
		select {
		case ev := <-lockWatch.ResultChan():
			if o, ok := ev.Object.(metav1.Object); ok {
				lockEvents[string(ev.Type)] = rv(t, o.GetResourceVersion())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the bootstrap lock's events: %v, want ADDED and DELETED", lockEvents)
		}
	}
	if d := rv(t, first["Deployment d8-system/deckhouse"]); lockEvents["ADDED"] >= d {
		t.Errorf("the bootstrap lock (rv %d) was not created before the Deployment (rv %d)", lockEvents["ADDED"], d)
	}
	for ref, v := range first {
		if strings.HasPrefix(ref, "ModuleConfig ") && rv(t, v) >= lockEvents["DELETED"] {
			t.Errorf("%s (rv %s) was created after the bootstrap lock went (rv %d)", ref, v, lockEvents["DELETED"])
		}
	}
	for _, want := range []string{
		"DaemonSet kube-flannel/kube-flannel-ds", "ConfigMap kube-flannel/kube-flannel-cfg",
		"Deployment kube-system/coredns", "Service kube-system/kube-dns", "ConfigMap kube-system/coredns",
		"CustomResourceDefinition nodegroups.deckhouse.io", "NodeGroup master", "NodeGroup worker",
		"CustomResourceDefinition staticinstances.deckhouse.io", "CustomResourceDefinition sshcredentials.deckhouse.io",
		"Secret d8-system/d8-dhctl-init-configuration",
		"Namespace d8-system", "ServiceAccount d8-system/deckhouse", "ClusterRoleBinding deckhouse",
		"Secret d8-system/deckhouse-registry", "Deployment d8-system/deckhouse", "ModuleConfig global",
		"ConfigMap d8-system/install-data", "ModuleConfig deckhouse",
		"ModuleConfig cni-flannel", "Secret kube-system/d8-cluster-configuration",
		"Secret kube-system/d8-static-cluster-configuration", "ConfigMap kube-system/d8-cluster-uuid",
	} {
		if _, ok := first[want]; !ok {
			t.Errorf("%s is not among the installed objects", want)
		}
	}

	if _, err := phase.Run(ctx, applyPhases, phase.Options{}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	second := resourceVersions(t, ctx, client, objs)
	for ref, rv := range first {
		if second[ref] != rv {
			t.Errorf("second run changed %s: resourceVersion %s -> %s", ref, rv, second[ref])
		}
	}

	// What the objects hold.
	cs := client.Typed()
	reg, err := cs.CoreV1().Secrets("d8-system").Get(ctx, "deckhouse-registry", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(reg.Data["address"]); got != "10.77.1.254:5000" {
		t.Errorf("deckhouse-registry address = %q", got)
	}
	if got := string(reg.Data["path"]); got != "/dhctl" {
		t.Errorf("deckhouse-registry path = %q", got)
	}
	if got := string(reg.Data["scheme"]); got != "https" {
		t.Errorf("deckhouse-registry scheme = %q", got)
	}
	if !strings.Contains(string(reg.Data[".dockerconfigjson"]), `"10.77.1.254:5000"`) || !strings.Contains(string(reg.Data["ca"]), "BEGIN CERTIFICATE") {
		t.Errorf("deckhouse-registry lacks the docker config or CA: keys %v", keys(reg.Data))
	}
	dep, err := cs.AppsV1().Deployments("d8-system").Get(ctx, "deckhouse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	if img := pod.Containers[0].Image; img != "10.77.1.254:5000/dhctl/platform-controller:v0.2.1" {
		t.Errorf("platform image = %q", img)
	}
	if !pod.HostNetwork || pod.NodeSelector["node-role.kubernetes.io/control-plane"] != "" || pod.Containers[0].ReadinessProbe == nil {
		t.Errorf("platform Deployment: hostNetwork %v, nodeSelector %v, readiness probe %v", pod.HostNetwork, pod.NodeSelector, pod.Containers[0].ReadinessProbe)
	}
	if data, err := cs.CoreV1().ConfigMaps("d8-system").Get(ctx, "install-data", metav1.GetOptions{}); err != nil || data.Data["version"] != "v1.2.3-test" {
		t.Errorf("install-data: %v %v, want version v1.2.3-test", data, err)
	}
	checkReleaseChannel(t, ctx, client, "") // held back until the platform is ready
	dmc, _ := client.Get(ctx, in.deckhouseModuleConfig())
	if b, _, _ := unstructured.NestedString(dmc.Object, "spec", "settings", "bundle"); b != "Minimal" {
		t.Errorf("deckhouse ModuleConfig bundle = %q, want the configuration's Minimal", b)
	}
	if l, _, _ := unstructured.NestedString(dmc.Object, "spec", "settings", "logLevel"); l != "Info" {
		t.Errorf("deckhouse ModuleConfig logLevel = %q, want the default Info", l)
	}

	// A run killed between creating the bootstrap lock and removing it: the re-run removes it
	// (the Deployment exists by then, so it is not created again).
	if _, err := cs.CoreV1().ConfigMaps("d8-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: BootstrapLockConfigMap, Namespace: "d8-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	platform := phaseNamed(t, in, PhasePlatform)
	if err := platform.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("d8-system").Get(ctx, BootstrapLockConfigMap, metav1.GetOptions{}); err == nil {
		t.Error("the re-run left the bootstrap lock: the platform would wait for ever")
	}

	// Once the platform is ready, install/release-channel sets the channel; applying the
	// platform again keeps it.
	rc := phaseNamed(t, in, PhaseReleaseChannel)
	if err := rc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	checkReleaseChannel(t, ctx, client, "Stable")
	if err := platform.Run(ctx); err != nil {
		t.Fatal(err)
	}
	checkReleaseChannel(t, ctx, client, "Stable")

	cfg, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "d8-cluster-configuration", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg.Data["cluster-configuration.yaml"]), "podSubnetCIDR: 10.111.0.0/16") {
		t.Errorf("d8-cluster-configuration:\n%s", cfg.Data["cluster-configuration.yaml"])
	}
	uuid, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "d8-cluster-uuid", metav1.GetOptions{})
	if err != nil || uuid.Data["cluster-uuid"] != testUUID {
		t.Errorf("d8-cluster-uuid: %v %v", uuid.Data, err)
	}
	flannel, err := cs.CoreV1().ConfigMaps("kube-flannel").Get(ctx, "kube-flannel-cfg", metav1.GetOptions{})
	if err != nil || !strings.Contains(flannel.Data["net-conf.json"], `"Network": "10.111.0.0/16"`) || !strings.Contains(flannel.Data["net-conf.json"], `"vxlan"`) {
		t.Errorf("flannel net-conf.json: %q %v", flannel.Data["net-conf.json"], err)
	}
	ng, err := client.Get(ctx, masterNodeGroup(config.ClusterTypeStatic))
	if err != nil {
		t.Fatal(err)
	}
	if nt, _, _ := unstructured.NestedString(ng.Object, "spec", "nodeType"); nt != "Static" {
		t.Errorf("NodeGroup master nodeType = %q, want Static", nt)
	}
}

func rv(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", s, err)
	}
	return n
}

func checkReleaseChannel(t *testing.T, ctx context.Context, c *kube.Client, want string) {
	t.Helper()
	mc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "deckhouse.io/v1alpha1", "kind": "ModuleConfig", "metadata": map[string]any{"name": DeckhouseModuleConfig}}}
	live, err := c.Get(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedString(live.Object, "spec", "settings", "releaseChannel"); got != want {
		t.Errorf("deckhouse ModuleConfig releaseChannel = %q, want %q", got, want)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// create-resources: CRDs first, then their resources; a resource whose CRD arrives later is
// created once it is served.
func TestCreateResourcesWaitsForLateCRD(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	client, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := newTestInstaller(t, client, loadTestConfig(t, true), Options{ResourcesTimeout: 90 * time.Second})

	var wg sync.WaitGroup
	wg.Add(1)
	crdErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		// Let create-resources find the kind missing a few times first.
		time.Sleep(4 * time.Second)
		objs, err := decodeDocuments("widget-crd", []byte(widgetCRD))
		if err == nil {
			_, err = client.Apply(ctx, objs[0])
		}
		crdErr <- err
	}()
	start := time.Now()
	err = in.ResourcesPhase().Run(ctx)
	wg.Wait()
	if err := <-crdErr; err != nil {
		t.Fatalf("creating the late CRD: %v", err)
	}
	if err != nil {
		t.Fatalf("create-resources: %v", err)
	}
	if time.Since(start) < 4*time.Second {
		t.Errorf("create-resources finished before the Widget CRD existed")
	}
	for _, ref := range []*unstructured.Unstructured{
		obj("example.com/v1", "Widget", "", "late"), obj("example.com/v1", "Gadget", "", "ordered"),
		obj("v1", "ConfigMap", "team-a", "settings"),
	} {
		if _, err := client.Get(ctx, ref); err != nil {
			t.Errorf("%s: %v", kube.Ref(ref), err)
		}
	}
}

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

func obj(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(ns)
	o.SetName(name)
	return o
}

// With a controller manager and scheduler but no node, the platform Deployment's pod stays
// Pending: wait-platform must give up at its bound and say which object and why.
func TestWaitPlatformTimeoutNamesTheBlocker(t *testing.T) {
	t.Parallel()
	c := loadTestConfig(t, false)
	client := startCluster(t, c, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := newTestInstaller(t, client, c, Options{PlatformTimeout: 12 * time.Second})
	phases := in.Phases()
	_, err := phase.Run(ctx, phases, phase.Options{})
	if err == nil {
		t.Fatal("wait-platform succeeded with no node to run the platform on")
	}
	var nr *kube.NotReadyError
	if !errors.As(err, &nr) {
		t.Fatalf("want a *kube.NotReadyError, got %T: %v", err, err)
	}
	var blocking []string
	for _, o := range nr.Objects {
		blocking = append(blocking, o.Object)
	}
	slices.Sort(blocking)
	if want := []string{"Deployment d8-system/deckhouse", "Deployment kube-system/coredns"}; !slices.Equal(blocking, want) {
		t.Fatalf("blocking: %v, want only %v (the DaemonSet has no node to run on), got:\n%v", blocking, want, err)
	}
	msg := err.Error()
	for _, want := range []string{"phase wait-platform", "0/1 replicas ready", "0/2 replicas ready", "Pending", "Unschedulable", "--deckhouse-timeout=12s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	t.Logf("the error, as a user sees it:\n%s", msg)
}

// install/dns creates CoreDNS only once the CNI is ready on the nodes (a sandbox made before
// that fails and is retried 10-15 s later): with a node and the CNI DaemonSet not ready it
// creates nothing and says what it waited for; once the DaemonSet reports its pods ready, it
// creates CoreDNS.
func TestDNSWaitsForTheCNIOnTheNodes(t *testing.T) {
	t.Parallel()
	c := loadTestConfig(t, false)
	client := startCluster(t, c, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := newTestInstaller(t, client, c, Options{PlatformTimeout: 3 * time.Second})
	if _, err := phase.Run(ctx, []phase.Phase{phaseNamed(t, in, PhaseCNI)}, phase.Options{}); err != nil {
		t.Fatal(err)
	}
	cs := client.Typed()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dns := phaseNamed(t, in, PhaseDNS)
	err := dns.Run(ctx)
	var nr *kube.NotReadyError
	if !errors.As(err, &nr) || len(nr.Objects) != 1 || nr.Objects[0].Object != "DaemonSet kube-flannel/kube-flannel-ds" {
		t.Fatalf("with the CNI not ready: want a NotReadyError naming only the flannel DaemonSet, got %v", err)
	}
	if !strings.Contains(err.Error(), "--deckhouse-timeout=3s") {
		t.Errorf("the error does not name its bound:\n%v", err)
	}
	if _, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err == nil {
		t.Fatal("CoreDNS was created before the CNI was ready")
	}

	// What the daemonset controller writes once flanneld is ready on the one node.
	ds, err := cs.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds.Status.ObservedGeneration = ds.Generation
	ds.Status.DesiredNumberScheduled, ds.Status.NumberReady, ds.Status.UpdatedNumberScheduled = 1, 1, 1
	if _, err := cs.AppsV1().DaemonSets("kube-flannel").UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dns.Run(ctx); err != nil {
		t.Fatalf("with the CNI ready: %v", err)
	}
	if _, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
		t.Fatalf("CoreDNS was not created once the CNI was ready: %v", err)
	}
}
