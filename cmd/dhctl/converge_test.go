package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/templates"
)

// `dhctl converge` against a real API server: --check exits 4 on drift, converge applies the
// plan, --check then exits 0; the plan is JSON with --log-format json.
func TestConvergeCheckExitCodes(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	k, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crd := &unstructured.Unstructured{}
	data, err := templates.FS.ReadFile("crds/nodegroup.yaml")
	if err == nil {
		err = sigsyaml.Unmarshal(data, &crd.Object)
	}
	if err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": kube.LockNamespace}}}
	if _, err := k.ApplyAll(ctx, []*unstructured.Unstructured{crd, ns}, kube.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitReady(ctx, []*unstructured.Unstructured{crd}, kube.WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	worker := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1", Labels: map[string]string{config.NodeGroupLabel: "worker"}}}
	if _, err := k.Typed().CoreV1().Nodes().Create(ctx, worker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "cluster.yml")
	src, err := os.ReadFile("../../examples/static-cluster.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, src, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := "--kubeconfig=" + cluster.Kubeconfig

	// Without --config the cluster's NodeGroups are the desired state: there are none, so in sync.
	if code, out, errOut := runCLI(t, nil, "converge", "--check", kc); code != 0 {
		t.Fatalf("check of a cluster without NodeGroups: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, nil, "converge", "--check", kc, "--config", cfg)
	if code != 4 || !strings.Contains(out, "NodeGroup worker: create") ||
		!strings.Contains(out, "+label node-role.kubernetes.io/worker=, +taint dedicated.example.com/role:PreferNoSchedule=worker") ||
		!strings.Contains(errOut, "the cluster differs from its configuration") {
		t.Fatalf("check with drift: exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, nil, "converge", kc, "--config", cfg); code != 0 || !strings.Contains(out, "node w1: +label node-role.kubernetes.io/worker=") {
		t.Fatalf("converge: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "--log-format", "json", "converge", "--check", kc, "--config", cfg)
	if code != 0 || !strings.Contains(out, `"node": "w1"`) || !strings.Contains(out, `"upToDate": 1`) {
		t.Fatalf("check after converge: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
}
