package kube

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"
)

func parse(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	js, err := sigsyaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	o := &unstructured.Unstructured{}
	if err := o.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestReadiness(t *testing.T) {
	cases := []struct {
		name, obj string
		ready     bool
		why       string
	}{
		{"deployment not observed", `{kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 1}, status: {observedGeneration: 1}}`,
			false, "is kube-controller-manager running?"},
		{"deployment not ready", `{kind: Deployment, metadata: {name: d, generation: 1}, spec: {replicas: 2}, status: {observedGeneration: 1, readyReplicas: 1, updatedReplicas: 2, availableReplicas: 1}}`,
			false, "1/2 replicas ready (2 updated, 1 available)"},
		{"deployment ready", `{kind: Deployment, metadata: {name: d, generation: 1}, spec: {replicas: 1}, status: {observedGeneration: 1, readyReplicas: 1, updatedReplicas: 1, availableReplicas: 1}}`,
			true, ""},
		{"daemonset with no nodes", `{kind: DaemonSet, metadata: {name: d, generation: 1}, status: {observedGeneration: 1, desiredNumberScheduled: 0}}`,
			true, ""},
		{"daemonset partly ready", `{kind: DaemonSet, metadata: {name: d, generation: 1}, status: {observedGeneration: 1, desiredNumberScheduled: 3, numberReady: 2, updatedNumberScheduled: 3}}`,
			false, "2/3 pods ready"},
		{"crd established", `{kind: CustomResourceDefinition, metadata: {name: c}, status: {conditions: [{type: Established, status: "True"}]}}`,
			true, ""},
		{"crd not established", `{kind: CustomResourceDefinition, metadata: {name: c}, status: {conditions: [{type: NamesAccepted, status: "False", reason: Conflict, message: "plural in use"}]}}`,
			false, "not established: Conflict plural in use"},
		{"pod pending", `{kind: Pod, metadata: {name: p}, status: {phase: Pending}}`, false, "pod Pending"},
		{"configmap exists", `{kind: ConfigMap, metadata: {name: c}}`, true, ""},
	}
	for _, c := range cases {
		ready, why, err := Readiness(parse(t, c.obj))
		if err != nil || ready != c.ready || !strings.Contains(why, c.why) {
			t.Errorf("%s: got ready=%v why=%q err=%v, want ready=%v why containing %q", c.name, ready, why, err, c.ready, c.why)
		}
	}
	_, _, err := Readiness(parse(t, `{kind: Job, metadata: {name: j, namespace: ns}, status: {conditions: [{type: Failed, status: "True", reason: BackoffLimitExceeded, message: "too many failures"}]}}`))
	if err == nil || !strings.Contains(err.Error(), "Job ns/j failed: BackoffLimitExceeded") {
		t.Errorf("a failed Job: %v", err)
	}
}

func TestSortForApplyPutsDependenciesFirst(t *testing.T) {
	objs := []*unstructured.Unstructured{
		parse(t, `{apiVersion: example.com/v1, kind: Widget, metadata: {name: w}}`),
		parse(t, `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}`),
		parse(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}`),
		parse(t, `{apiVersion: v1, kind: Namespace, metadata: {name: ns1}}`),
		parse(t, `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: widgets.example.com}}`),
		parse(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c2}}`),
	}
	SortForApply(objs)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	want := "CustomResourceDefinition/widgets.example.com Namespace/ns1 ConfigMap/c ConfigMap/c2 Deployment/d Widget/w"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestNotReadyErrorListsEveryObject(t *testing.T) {
	err := &NotReadyError{Waited: 90 * time.Second, Objects: []NotReady{
		{Object: "Deployment d8-system/deckhouse", Reason: "0/1 replicas ready", Detail: []string{"pod x: Pending"}},
		{Object: "DaemonSet kube-flannel/kube-flannel-ds", Reason: "0/1 pods ready"},
	}}
	want := "not ready after 1m30s: Deployment d8-system/deckhouse, DaemonSet kube-flannel/kube-flannel-ds\n" +
		"  Deployment d8-system/deckhouse: 0/1 replicas ready\n    pod x: Pending\n" +
		"  DaemonSet kube-flannel/kube-flannel-ds: 0/1 pods ready"
	if err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err.Error(), want)
	}
}

func TestFromKubeconfigErrorsNameTheFile(t *testing.T) {
	_, err := FromKubeconfig("/nonexistent/kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig /nonexistent/kubeconfig") {
		t.Errorf("got %v", err)
	}
}

func TestRetryableErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for _, c := range []struct {
		err       error
		permanent bool
	}{
		{&url.Error{Op: "Patch", URL: "https://x", Err: refused}, false},
		{fmt.Errorf("applying: %w", &KindNotServedError{}), false},
		{apierrors.NewConflict(schema.GroupResource{Resource: "x"}, "n", errors.New("c")), false},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "X"}, "n", nil), true},
		{errors.New("want metadata.name"), true},
	} {
		if got := permanent(c.err); got != c.permanent {
			t.Errorf("permanent(%v) = %v, want %v", c.err, got, c.permanent)
		}
	}
}
