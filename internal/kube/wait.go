package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Readiness says whether the live object is ready, and if not, why in one line. Kinds without a
// known notion of readiness are ready once they exist. A failed Job is an error: waiting cannot
// fix it.
func Readiness(live *unstructured.Unstructured) (ready bool, why string, err error) {
	gen := live.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(live.Object, "status", "observedGeneration")
	notObserved := func(controller string) string {
		return fmt.Sprintf("not yet processed by the %s (status.observedGeneration %d < metadata.generation %d): is kube-controller-manager running?",
			controller, observed, gen)
	}
	switch live.GetKind() {
	case "Deployment":
		if observed < gen {
			return false, notObserved("deployment controller"), nil
		}
		want := int64Field(live, 1, "spec", "replicas")
		readyN := int64Field(live, 0, "status", "readyReplicas")
		updated := int64Field(live, 0, "status", "updatedReplicas")
		available := int64Field(live, 0, "status", "availableReplicas")
		if updated >= want && available >= want && readyN >= want {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d/%d replicas ready (%d updated, %d available)", readyN, want, updated, available), nil
	case "StatefulSet":
		if observed < gen {
			return false, notObserved("statefulset controller"), nil
		}
		want := int64Field(live, 1, "spec", "replicas")
		readyN := int64Field(live, 0, "status", "readyReplicas")
		if readyN >= want {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d/%d replicas ready", readyN, want), nil
	case "DaemonSet":
		if observed < gen {
			return false, notObserved("daemonset controller"), nil
		}
		desired := int64Field(live, 0, "status", "desiredNumberScheduled")
		readyN := int64Field(live, 0, "status", "numberReady")
		updated := int64Field(live, 0, "status", "updatedNumberScheduled")
		if readyN >= desired && updated >= desired {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d/%d pods ready (%d updated)", readyN, desired, updated), nil
	case "Pod":
		if conditionStatus(live, "Ready") == "True" {
			return true, "", nil
		}
		phase, _, _ := unstructured.NestedString(live.Object, "status", "phase")
		return false, "pod " + phaseOr(phase), nil
	case "Job":
		if conditionStatus(live, "Complete") == "True" {
			return true, "", nil
		}
		if conditionStatus(live, "Failed") == "True" {
			return false, "", fmt.Errorf("%s failed: %s", Ref(live), conditionMessage(live, "Failed"))
		}
		return false, "not complete", nil
	case "CustomResourceDefinition":
		if conditionStatus(live, "Established") == "True" {
			return true, "", nil
		}
		return false, "not established: " + conditionMessage(live, "NamesAccepted"), nil
	case "Namespace":
		phase, _, _ := unstructured.NestedString(live.Object, "status", "phase")
		if phase == "" || phase == "Active" {
			return true, "", nil
		}
		return false, "namespace is " + phase, nil
	}
	return true, "", nil
}

func phaseOr(phase string) string {
	if phase == "" {
		return "with no phase yet"
	}
	return phase
}

func int64Field(obj *unstructured.Unstructured, def int64, path ...string) int64 {
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	if !found || err != nil {
		return def
	}
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return def
}

func conditions(obj *unstructured.Unstructured) []map[string]any {
	list, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	out := make([]map[string]any, 0, len(list))
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func conditionStatus(obj *unstructured.Unstructured, typ string) string {
	for _, c := range conditions(obj) {
		if c["type"] == typ {
			s, _ := c["status"].(string)
			return s
		}
	}
	return ""
}

func conditionMessage(obj *unstructured.Unstructured, typ string) string {
	for _, c := range conditions(obj) {
		if c["type"] == typ {
			r, _ := c["reason"].(string)
			m, _ := c["message"].(string)
			return strings.TrimSpace(r + " " + m)
		}
	}
	return "no " + typ + " condition yet"
}

// NotReady is one object a wait ended on.
type NotReady struct {
	Object string   // "Deployment d8-system/deckhouse"
	Reason string   // one line
	Detail []string // pods, container states, events, log lines
}

// NotReadyError is a wait that ran out of time: every object still not ready and why.
type NotReadyError struct {
	Waited  time.Duration
	Objects []NotReady
}

func (e *NotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "not ready after %s: ", e.Waited.Round(time.Second))
	names := make([]string, len(e.Objects))
	for i, o := range e.Objects {
		names[i] = o.Object
	}
	b.WriteString(strings.Join(names, ", "))
	for _, o := range e.Objects {
		fmt.Fprintf(&b, "\n  %s: %s", o.Object, o.Reason)
		for _, d := range o.Detail {
			fmt.Fprintf(&b, "\n    %s", d)
		}
	}
	return b.String()
}

// WaitOptions bound WaitReady.
type WaitOptions struct {
	Timeout  time.Duration // required
	Interval time.Duration // 0 means 2 s
	// Progress, if set, is told which objects are still not ready after each poll.
	Progress func(notReady []NotReady)
}

// WaitReady polls until every object (matched by kind, namespace and name) exists and is ready
// (see Readiness), or the timeout passes; then it returns a *NotReadyError saying, for each
// object still waiting, why: replica counts, its pods' phases, scheduling failures, container
// waiting reasons, recent events and the last log lines.
func (c *Client) WaitReady(ctx context.Context, objs []*unstructured.Unstructured, opts WaitOptions) error {
	if opts.Timeout <= 0 {
		return fmt.Errorf("WaitReady: a timeout is required")
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	for {
		var waiting []*unstructured.Unstructured
		var reasons []NotReady
		for _, obj := range objs {
			ready, why, err := c.readyNow(wctx, obj)
			if err != nil && wctx.Err() == nil {
				return err
			}
			if err != nil {
				why = err.Error()
			}
			if !ready {
				waiting = append(waiting, obj)
				reasons = append(reasons, NotReady{Object: Ref(obj), Reason: why})
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if opts.Progress != nil {
			opts.Progress(reasons)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for %s: %w", reasons[0].Object, ctx.Err())
			}
			// The wait's own context is spent; judge once more and diagnose with a fresh,
			// short one: a read cut off by the deadline says nothing about the object, and
			// an object that became ready during the last poll is not a blocker.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			defer dcancel()
			var blockers []NotReady
			for i, obj := range waiting {
				ready, why, err := c.readyNow(dctx, obj)
				if ready {
					continue
				}
				r := reasons[i]
				switch {
				case err != nil:
					r.Reason = err.Error()
				case why != "":
					r.Reason = why
				}
				r.Detail = c.Explain(dctx, obj)
				blockers = append(blockers, r)
			}
			if len(blockers) == 0 {
				return nil
			}
			return &NotReadyError{Waited: time.Since(start), Objects: blockers}
		case <-time.After(interval):
		}
	}
}

// readyNow reads obj and judges its readiness; a missing object is not ready (not an error).
func (c *Client) readyNow(ctx context.Context, obj *unstructured.Unstructured) (bool, string, error) {
	live, err := c.Get(ctx, obj)
	var kind *KindNotServedError
	switch {
	case errors.As(err, &kind):
		return false, err.Error(), nil
	case apierrors.IsNotFound(err):
		return false, "does not exist", nil
	case err != nil:
		if isAPIError(err) {
			return false, "reading it: " + err.Error(), nil
		}
		return false, "", fmt.Errorf("reading %s: %w", Ref(obj), err)
	}
	return Readiness(live)
}
