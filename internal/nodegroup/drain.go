package nodegroup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/dhctl-dev/dhctl/internal/kube"
)

// DefaultDrainTimeout bounds a node's drain.
const DefaultDrainTimeout = 5 * time.Minute

// Cordon marks node unschedulable (kept so by a re-run).
func Cordon(ctx context.Context, k kubernetes.Interface, node string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	patch := []byte(`{"spec":{"unschedulable":true}}`)
	if _, err := k.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("cordoning node %s: %w", node, err)
	}
	return nil
}

// Drain evicts every pod of node that a drain moves (not DaemonSets' pods, which stay with
// their node, nor static pods), honouring PodDisruptionBudgets, and waits for them to be gone.
// It is bounded by timeout; a pod that cannot be evicted in time is named with the reason. On a
// lost node (Lost: its kubelet no longer reports) an evicted pod cannot finish terminating until
// the Node is deleted, so it is not waited for: it is gone from the node's point of view, and
// its controller has made a replacement elsewhere.
func Drain(ctx context.Context, k kubernetes.Interface, node string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	blocked := map[string]string{} // pod -> why its last eviction failed
	for {
		lost, err := nodeLost(ctx, k, node)
		if err != nil {
			return drainError(ctx, node, timeout, err, blocked)
		}
		pods, err := k.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
		if err != nil {
			return drainError(ctx, node, timeout, fmt.Errorf("listing its pods: %w", err), blocked)
		}
		left := 0
		prev := blocked
		blocked = map[string]string{}
		for i := range pods.Items {
			p := &pods.Items[i]
			if !drained(p) {
				continue
			}
			left++
			name := p.Namespace + "/" + p.Name
			if p.DeletionTimestamp != nil {
				if lost {
					left--
					continue
				}
				blocked[name] = "terminating"
				continue
			}
			err := evict(ctx, k, p)
			if ctx.Err() != nil {
				return drainError(ctx, node, timeout, nil, prev) // what blocked it before the bound
			}
			switch {
			case err == nil, apierrors.IsNotFound(err):
				blocked[name] = "evicted, terminating"
			case apierrors.IsTooManyRequests(err):
				blocked[name] = "its PodDisruptionBudget allows no disruption now"
			default:
				blocked[name] = err.Error()
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return drainError(ctx, node, timeout, nil, blocked)
		case <-time.After(2 * time.Second):
		}
	}
}

// evict asks for p's eviction once: client-go would otherwise retry a refusal by the pod's
// budget (429, Retry-After) on its own, and the drain could not say what blocks it.
func evict(ctx context.Context, k kubernetes.Interface, p *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	e := &policyv1.Eviction{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"}, ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
	return k.CoreV1().RESTClient().Post().Namespace(p.Namespace).Resource("pods").Name(p.Name).SubResource("eviction").
		MaxRetries(0).Body(e).Do(ctx).Error()
}

// Lost reports whether a node's kubelet no longer reports: the node controller set its Ready
// condition to Unknown (a machine powered off, gone, or cut off).
func Lost(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionUnknown
		}
	}
	return false
}

func nodeLost(ctx context.Context, k kubernetes.Interface, node string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := k.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the node: %w", err)
	}
	return Lost(n), nil
}

// drained reports whether a drain moves p: not a static (mirror) pod, not a DaemonSet's, not
// finished.
func drained(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func drainError(ctx context.Context, node string, timeout time.Duration, cause error, blocked map[string]string) error {
	if cause == nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err()
	}
	var pods []string
	for p, why := range blocked {
		pods = append(pods, p+" ("+why+")")
	}
	sort.Strings(pods)
	msg := fmt.Sprintf("draining node %s: not done within %s", node, timeout)
	if cause != nil {
		msg = fmt.Sprintf("draining node %s: %v", node, cause)
	}
	if len(pods) > 0 {
		msg += "; pods left: " + strings.Join(pods, ", ")
	}
	return errors.New(msg + " (the node stays cordoned: free what blocks the drain, then run converge again)")
}
