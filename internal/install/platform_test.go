package install

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// What a Deckhouse controller needs from its Deployment (Deckhouse's installer,
// dhctl/pkg/kubernetes/actions/manifests): a missing item means a real Deckhouse image would not
// start, or its own chart could not adopt the objects.
var (
	platformEnvValues = map[string]string{
		"HELM_HOST": "127.0.0.1:44434", "ADDON_OPERATOR_LISTEN_PORT": "4222",
		"ADDON_OPERATOR_ADMISSION_SERVER_LISTEN_PORT": "4223", "ADDON_OPERATOR_CRD_EXTRA_LABELS": "heritage=deckhouse",
		"HELM_HISTORY_MAX": "3", "ADDON_OPERATOR_CONFIG_MAP": "deckhouse", "ADDON_OPERATOR_PROMETHEUS_METRICS_PREFIX": "deckhouse_",
		"LOG_TYPE": "json", "LOG_LEVEL": "Info", "DECKHOUSE_BUNDLE": "Minimal",
		"DOWNLOADED_MODULES_DIR": "/deckhouse/downloaded", "EXTERNAL_MODULES_DIR": "/deckhouse/downloaded",
		"MODULES_DIR": "/deckhouse/modules:/deckhouse/downloaded", "KUBERNETES_SERVICE_PORT": "6443",
		"GOGC": "100", "GOMEMLIMIT": "1400MiB", "DEBUG_HTTP_SERVER_ADDR": "127.0.0.1:9652",
		"KUBE_CLIENT_QPS": "-1", "KUBE_CLIENT_BURST": "-1", "OBJECT_PATCHER_KUBE_CLIENT_QPS": "-1",
		"OBJECT_PATCHER_KUBE_CLIENT_BURST": "-1", "HELM_MONITOR_KUBE_CLIENT_QPS": "-1", "HELM_MONITOR_KUBE_CLIENT_BURST": "-1",
	}
	platformEnvFields = map[string]string{
		"DECKHOUSE_POD": "metadata.name", "DECKHOUSE_NODE_NAME": "spec.nodeName",
		"ADDON_OPERATOR_NAMESPACE": "metadata.namespace", "ADDON_OPERATOR_LISTEN_ADDRESS": "status.podIP",
		"KUBERNETES_SERVICE_HOST": "status.hostIP",
	}
	platformMounts    = map[string]string{"/tmp": "tmp", "/run": "tmp", "/.kube": "kube", "/deckhouse/downloaded": "downloaded", "/dev": "dev-dir"}
	platformHostPaths = map[string]string{"downloaded": "/var/lib/deckhouse/downloaded", "deckhouse": "/var/lib/deckhouse", "dev-dir": "/dev"}
	helmLabels        = map[string]string{"heritage": "deckhouse", "app.kubernetes.io/managed-by": "Helm"}
	helmAnnotations   = map[string]string{"meta.helm.sh/release-name": "deckhouse", "meta.helm.sh/release-namespace": "d8-system"}
)

func platformObject[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			out := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("no %s %s among the platform objects", kind, name)
	return nil
}

func checkHelmOwnership(t *testing.T, what string, m metav1.ObjectMeta) {
	t.Helper()
	for k, v := range helmLabels {
		if m.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", what, k, m.Labels[k], v)
		}
	}
	for k, v := range helmAnnotations {
		if m.Annotations[k] != v {
			t.Errorf("%s: annotation %s = %q, want %q", what, k, m.Annotations[k], v)
		}
	}
}

func TestPlatformDeploymentHasWhatTheControllerNeeds(t *testing.T) {
	in := newTestInstaller(t, nil, loadTestConfig(t, false), Options{Connect: func(context.Context) (*kube.Client, error) { return nil, nil }})
	objs, err := in.PlatformObjects()
	if err != nil {
		t.Fatal(err)
	}
	dep := platformObject[appsv1.Deployment](t, objs, "Deployment", "deckhouse")
	checkHelmOwnership(t, "Deployment", dep.ObjectMeta)
	checkHelmOwnership(t, "ServiceAccount", platformObject[corev1.ServiceAccount](t, objs, "ServiceAccount", "deckhouse").ObjectMeta)
	reg := platformObject[corev1.Secret](t, objs, "Secret", "deckhouse-registry")
	checkHelmOwnership(t, "Secret deckhouse-registry", reg.ObjectMeta)
	if reg.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("deckhouse-registry type %q", reg.Type)
	}

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "deckhouse" {
		t.Fatalf("containers: %+v", pod.Containers)
	}
	c := pod.Containers[0]
	if strings.Join(c.Command, " ") != "/usr/bin/deckhouse-controller start" || c.WorkingDir != "/deckhouse" {
		t.Errorf("command %q in %q, want /usr/bin/deckhouse-controller start in /deckhouse", c.Command, c.WorkingDir)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for k, v := range platformEnvValues {
		if e, ok := env[k]; !ok || e.Value != v {
			t.Errorf("env %s = %+v, want %q", k, e, v)
		}
	}
	for k, field := range platformEnvFields {
		if e, ok := env[k]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != field {
			t.Errorf("env %s = %+v, want the field %s", k, e, field)
		}
	}
	if e := env["ADDON_OPERATOR_APPLIED_MODULE_EXTENDERS"]; !strings.Contains(e.Value, "Bootstrapped") {
		t.Errorf("ADDON_OPERATOR_APPLIED_MODULE_EXTENDERS = %q", e.Value)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["self"] != 4222 || ports["custom"] != 4223 {
		t.Errorf("ports %v, want self 4222 and custom 4223", ports)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.IntValue() != 4222 ||
		p.PeriodSeconds < 1 || p.PeriodSeconds > 2 || p.InitialDelaySeconds != 0 || p.PeriodSeconds*p.FailureThreshold != 600 {
		// Probed often (the bootstrap waits for the pod Ready), unready only after Deckhouse's
		// 10 minutes of failures.
		t.Errorf("readiness probe %+v, want GET /readyz :4222 every 1-2 s from the start, unready after 600 s of failures", p)
	}
	if c.LivenessProbe != nil {
		t.Error("a liveness probe: Deckhouse's installer sets none (a long first converge would restart it)")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for p, v := range platformMounts {
		if mounts[p] != v {
			t.Errorf("mount %s = %q, want volume %s", p, mounts[p], v)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for name, p := range platformHostPaths {
		if v := volumes[name]; v.HostPath == nil || v.HostPath.Path != p {
			t.Errorf("volume %s: %+v, want hostPath %s", name, v.VolumeSource, p)
		}
	}
	for _, name := range []string{"tmp", "kube"} {
		if v := volumes[name]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("volume %s: %+v, want a memory emptyDir", name, v.VolumeSource)
		}
	}
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "init-downloaded-modules" ||
		!strings.Contains(strings.Join(pod.InitContainers[0].Command, " "), "mkdir -p /deckhouse/downloaded/modules") ||
		len(pod.InitContainers[0].VolumeMounts) != 1 || pod.InitContainers[0].VolumeMounts[0].MountPath != "/deckhouse" {
		t.Errorf("init container: %+v", pod.InitContainers)
	}
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSDefault || pod.ServiceAccountName != "deckhouse" ||
		pod.PriorityClassName != "system-cluster-critical" || len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "deckhouse-registry" ||
		pod.NodeSelector["node-role.kubernetes.io/control-plane"] != "" || len(pod.NodeSelector) != 1 ||
		len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("pod spec: hostNetwork %v dns %s sa %s priority %s pull secrets %v nodeSelector %v tolerations %v",
			pod.HostNetwork, pod.DNSPolicy, pod.ServiceAccountName, pod.PriorityClassName, pod.ImagePullSecrets, pod.NodeSelector, pod.Tolerations)
	}
	if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || dep.Spec.Selector.MatchLabels["app"] != "deckhouse" {
		t.Errorf("strategy %s selector %v", dep.Spec.Strategy.Type, dep.Spec.Selector)
	}

	// The deckhouse ModuleConfig: always there, releaseChannel held back.
	mc := in.deckhouseModuleConfig()
	if _, found, _ := unstructured.NestedString(mc.Object, "spec", "settings", "releaseChannel"); found {
		t.Errorf("the deckhouse ModuleConfig as first applied has a releaseChannel: %v", mc.Object)
	}
	if in.Values().Platform.ReleaseChannel != "Stable" {
		t.Errorf("the held-back channel = %q, want Stable", in.Values().Platform.ReleaseChannel)
	}
}

func TestPlatformLogIsFollowedIncrementally(t *testing.T) {
	var logged bytes.Buffer
	w := &platformWatch{in: &Installer{log: slog.New(slog.NewTextHandler(&logged, nil))}}
	line := func(sec int, s string) string {
		return time.Date(2026, 12, 2, 6, 0, sec, 500, time.UTC).Format(time.RFC3339Nano) + " " + s + "\n"
	}
	w.consume([]byte(line(1, "plain text at start") +
		line(2, `{"level":"info","msg":"ModuleRun success, module is ready","module":"cni-flannel"}`) +
		line(3, `{"level":"error","msg":"cannot reach the registry","module":"deckhouse"}`) +
		line(3, `{"level":"error","msg":"cannot reach the registry","module":"deckhouse"}`)))
	if w.converged || len(w.modules) != 1 || w.modules[0] != "cni-flannel" {
		t.Errorf("after the first read: converged %v, modules %v", w.converged, w.modules)
	}
	// The next read starts at the last whole second: lines already seen come again.
	w.consume([]byte(line(3, `{"level":"error","msg":"cannot reach the registry","module":"deckhouse"}`) +
		line(4, `{"level":"info","msg":"ModuleRun success, module is ready","module":"deckhouse"}`) +
		line(5, `{"level":"info","msg":"ConvergeModules task done"}`)))
	if !w.converged || strings.Join(w.modules, ",") != "cni-flannel,deckhouse" {
		t.Errorf("after the second read: converged %v, modules %v", w.converged, w.modules)
	}
	if n := strings.Count(logged.String(), "cannot reach the registry"); n != 1 {
		t.Errorf("the error line was shown %d times, want once:\n%s", n, logged.String())
	}
	for i := 0; i < 3*maxPlatformErrors; i++ {
		w.consume([]byte(line(10+i, `{"level":"error","msg":"error `+string(rune('a'+i))+`"}`)))
	}
	if len(w.errors) != maxPlatformErrors {
		t.Errorf("%d distinct errors kept, want the bound %d", len(w.errors), maxPlatformErrors)
	}
}

func TestPlatformLeaderPod(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	client, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := client.Typed()
	w := &platformWatch{in: &Installer{log: slog.New(slog.DiscardHandler)}, c: client}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "d8-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("d8-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "d8-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if pod, why, err := w.leaderPod(ctx); pod != nil || err != nil || !strings.Contains(why, "no pod") {
		t.Errorf("no pods: %v %q %v", pod, why, err)
	}
	newPod := func(name string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "d8-system", Labels: map[string]string{"app": "deckhouse"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "deckhouse", Image: "x"}}}}
		if _, err := cs.CoreV1().Pods("d8-system").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	newPod("deckhouse-a")
	if pod, _, err := w.leaderPod(ctx); err != nil || pod == nil || pod.Name != "deckhouse-a" {
		t.Errorf("one pod: %v %v", pod, err)
	}
	if done, why, err := w.poll(ctx); done || err != nil || !strings.Contains(why, "pod deckhouse-a is Pending") {
		t.Errorf("a Pending pod: done %v, %q, %v", done, why, err)
	}
	newPod("deckhouse-b") // a rollout: two pods, the Lease says which works
	if pod, why, _ := w.leaderPod(ctx); pod != nil || !strings.Contains(why, "no leader yet") {
		t.Errorf("two pods, no Lease: %v %q", pod, why)
	}
	holder := "deckhouse-b.5f3a"
	if _, err := cs.CoordinationV1().Leases("d8-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaderLease, Namespace: "d8-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if pod, _, err := w.leaderPod(ctx); err != nil || pod == nil || pod.Name != "deckhouse-b" {
		t.Errorf("two pods, Lease held by deckhouse-b: %v %v", pod, err)
	}
}
