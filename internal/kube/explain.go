package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// Limits of what Explain gathers, so a failure message stays readable.
const (
	explainPods     = 3
	explainEvents   = 5
	explainLogLines = 10
)

// Explain gathers why obj is not ready, best effort (what cannot be read is said, not fatal):
// for workloads the state of their pods (phase, scheduling, container waiting/terminated
// reasons, events, last log lines), or, with no pods at all, the workload's own events and
// whether any Node is registered.
func (c *Client) Explain(ctx context.Context, obj *unstructured.Unstructured) []string {
	var out []string
	switch obj.GetKind() {
	case "Deployment", "DaemonSet", "StatefulSet", "Job":
	case "Pod":
		pod, err := c.typed.CoreV1().Pods(obj.GetNamespace()).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return []string{"reading the pod: " + err.Error()}
		}
		return c.explainPod(ctx, pod)
	default:
		return c.events(ctx, obj.GetNamespace(), obj.GetKind(), obj.GetName())
	}
	live, err := c.Get(ctx, obj)
	if err != nil {
		return []string{"reading it: " + err.Error()}
	}
	sel, found, _ := unstructured.NestedStringMap(live.Object, "spec", "selector", "matchLabels")
	var pods []corev1.Pod
	if found && len(sel) > 0 {
		list, err := c.typed.CoreV1().Pods(obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
		if err != nil {
			out = append(out, "listing its pods: "+err.Error())
		} else {
			pods = list.Items
		}
	}
	if len(pods) == 0 {
		out = append(out, "no pods")
		out = append(out, c.events(ctx, obj.GetNamespace(), obj.GetKind(), obj.GetName())...)
		if obj.GetKind() == "Deployment" {
			out = append(out, c.replicaSetEvents(ctx, obj.GetNamespace(), sel)...)
		}
		out = append(out, c.nodesSummary(ctx))
		return out
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].CreationTimestamp.After(pods[j].CreationTimestamp.Time) })
	for i := range pods {
		if i == explainPods {
			out = append(out, fmt.Sprintf("... and %d more pods", len(pods)-explainPods))
			break
		}
		out = append(out, c.explainPod(ctx, &pods[i])...)
	}
	return out
}

func (c *Client) explainPod(ctx context.Context, pod *corev1.Pod) []string {
	line := fmt.Sprintf("pod %s: %s", pod.Name, phaseOr(string(pod.Status.Phase)))
	if pod.Spec.NodeName != "" {
		line += " on node " + pod.Spec.NodeName
	}
	out := []string{line}
	for _, cond := range pod.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && (cond.Type == corev1.PodScheduled || cond.Type == corev1.PodReady) {
			out = append(out, fmt.Sprintf("  %s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message))
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, st := range statuses {
		switch {
		case st.State.Waiting != nil:
			out = append(out, fmt.Sprintf("  container %s waiting: %s %s", st.Name, st.State.Waiting.Reason, st.State.Waiting.Message))
		case st.State.Terminated != nil:
			out = append(out, fmt.Sprintf("  container %s terminated: %s (exit code %d) %s", st.Name, st.State.Terminated.Reason, st.State.Terminated.ExitCode, st.State.Terminated.Message))
		case !st.Ready:
			out = append(out, fmt.Sprintf("  container %s running, not ready (restarts %d)", st.Name, st.RestartCount))
		}
		if st.LastTerminationState.Terminated != nil {
			t := st.LastTerminationState.Terminated
			out = append(out, fmt.Sprintf("  container %s last exit: %s (exit code %d)", st.Name, t.Reason, t.ExitCode))
		}
	}
	for _, e := range c.events(ctx, pod.Namespace, "Pod", pod.Name) {
		out = append(out, "  "+e)
	}
	if pod.Spec.NodeName != "" {
		for _, ctr := range pod.Spec.Containers {
			out = append(out, c.logTail(ctx, pod, ctr.Name)...)
		}
	}
	return out
}

// events are the last few events about one object, oldest first.
func (c *Client) events(ctx context.Context, namespace, kind, name string) []string {
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	list, err := c.typed.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return []string{"events: " + err.Error()}
	}
	evs := list.Items
	sort.Slice(evs, func(i, j int) bool { return eventTime(&evs[i]).Time.Before(eventTime(&evs[j]).Time) })
	if len(evs) > explainEvents {
		evs = evs[len(evs)-explainEvents:]
	}
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		line := fmt.Sprintf("event %s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message))
		if len(out) > 0 && out[len(out)-1] == line {
			continue // the same event recorded again (a retrying scheduler)
		}
		out = append(out, line)
	}
	return out
}

func eventTime(e *corev1.Event) metav1.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp
	}
	if !e.EventTime.IsZero() {
		return metav1.Time{Time: e.EventTime.Time}
	}
	return e.CreationTimestamp
}

// replicaSetEvents explain a Deployment whose ReplicaSet could not create pods (quota,
// admission, a missing ServiceAccount).
func (c *Client) replicaSetEvents(ctx context.Context, namespace string, sel map[string]string) []string {
	if len(sel) == 0 {
		return nil
	}
	list, err := c.typed.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return nil
	}
	var out []string
	for _, rs := range list.Items {
		for _, e := range c.events(ctx, namespace, "ReplicaSet", rs.Name) {
			out = append(out, "replicaset "+rs.Name+": "+e)
		}
	}
	return out
}

func (c *Client) nodesSummary(ctx context.Context) string {
	nodes, err := c.typed.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "nodes: " + err.Error()
	}
	if len(nodes.Items) == 0 {
		return "no Nodes are registered: no kubelet has joined the cluster yet"
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return fmt.Sprintf("%d/%d Nodes Ready", ready, len(nodes.Items))
}

// logTail is the last log lines of one container, or nothing when they cannot be read (no
// kubelet, container never started).
func (c *Client) logTail(ctx context.Context, pod *corev1.Pod, container string) []string {
	tail := int64(explainLogLines)
	data, err := c.typed.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container, TailLines: &tail}).DoRaw(ctx)
	if err != nil || len(data) == 0 {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	out := []string{fmt.Sprintf("  last %d log lines of %s:", len(lines), container)}
	for _, l := range lines {
		out = append(out, "    | "+l)
	}
	return out
}
