package kube

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

const testDeployment = `{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: default},
  spec: {replicas: 1, selector: {matchLabels: {app: web}},
    template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: example.invalid/web:1}]}}}}`

// Against a real API server with no controllers: a Deployment is not ready (and the error says
// the controller manager has not processed it); once its status says ready (written through the
// status subresource, standing in for the controllers), WaitReady returns.
func TestWaitReadyFollowsStatus(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	c, err := New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dep := parse(t, testDeployment)
	applied, err := c.Apply(ctx, dep)
	if err != nil {
		t.Fatal(err)
	}

	err = c.WaitReady(ctx, []*unstructured.Unstructured{dep}, WaitOptions{Timeout: 2 * time.Second, Interval: 200 * time.Millisecond})
	var nr *NotReadyError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "Deployment default/web: not yet processed by the deployment controller") ||
		!strings.Contains(err.Error(), "no Nodes are registered") {
		t.Fatalf("want a NotReadyError naming the Deployment, the controller and the missing nodes; got %v", err)
	}

	done := make(chan error, 1)
	go func() {
		done <- c.WaitReady(ctx, []*unstructured.Unstructured{dep}, WaitOptions{Timeout: 30 * time.Second, Interval: 200 * time.Millisecond})
	}()
	time.Sleep(time.Second)
	status := `{"status":{"observedGeneration":` + strconv.FormatInt(applied.GetGeneration(), 10) + `,"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}`
	if _, err := c.Typed().AppsV1().Deployments("default").Patch(ctx, "web", types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitReady after the status turned ready: %v", err)
	}
}
