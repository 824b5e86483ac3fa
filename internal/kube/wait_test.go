package kube

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

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

// slowPath delays every request for one URL path by a fixed time (or until the request's
// context ends): an API server slow to answer about one object.
type slowPath struct {
	path  string
	delay time.Duration
	next  http.RoundTripper
}

func (s slowPath) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == s.path {
		select {
		case <-time.After(s.delay):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return s.next.RoundTrip(req)
}

// When the wait's deadline cuts off the read of an object that is in fact ready, the timeout
// must not name that object as a blocker (nor blame it on the deadline): the verdict is taken
// again with a fresh context, and only the objects really not ready are reported.
func TestWaitTimeoutNamesOnlyRealBlockers(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setup, err := New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	dep := parse(t, testDeployment)
	settings := parse(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: settings, namespace: default}, data: {a: b}}`)
	for _, o := range []*unstructured.Unstructured{dep, settings} {
		if _, err := setup.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	cfg := rest.CopyConfig(cluster.Config)
	cfg.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return slowPath{path: "/api/v1/namespaces/default/configmaps/settings", delay: 1500 * time.Millisecond, next: next}
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitReady(ctx, []*unstructured.Unstructured{dep, settings}, WaitOptions{Timeout: time.Second, Interval: 100 * time.Millisecond})
	var nr *NotReadyError
	if !errors.As(err, &nr) {
		t.Fatalf("want a NotReadyError naming the Deployment, got %v", err)
	}
	var blocking []string
	for _, o := range nr.Objects {
		blocking = append(blocking, o.Object)
	}
	if len(blocking) != 1 || blocking[0] != "Deployment default/web" {
		t.Fatalf("blocking: %v, want only [Deployment default/web] (the ConfigMap exists, only its read was slow):\n%v", blocking, err)
	}
	if strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("the error blames the wait's own deadline:\n%v", err)
	}
}
