package nodegroup

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/dhctl-dev/dhctl/internal/config"
)

func TestReconcileAddsChangesAndRemovesOnlyWhatTheTemplateOwned(t *testing.T) {
	old := config.NodeTemplate{
		Labels:      map[string]string{"tier": "edge", "gone": "x", "theirs-now": "a"},
		Annotations: map[string]string{"note": "one"},
		Taints:      []config.Taint{{Key: "edge", Value: "true", Effect: "NoSchedule"}},
	}
	cur := Meta{
		Labels: map[string]string{"tier": "edge", "gone": "x", "theirs-now": "changed-by-someone", "operator": "keep",
			config.NodeGroupLabel: "worker"},
		Annotations: map[string]string{"note": "one", "operator/note": "keep", LastAppliedAnnotation: Record(old)},
		Taints: []corev1.Taint{{Key: "edge", Value: "true", Effect: corev1.TaintEffectNoSchedule},
			{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute}},
	}
	want := config.NodeTemplate{
		Labels:      map[string]string{"tier": "core", "new": ""},
		Annotations: map[string]string{"note": "two"},
		Taints:      []config.Taint{{Key: "dedicated", Value: "db", Effect: "NoExecute"}},
	}
	next, changes, recorded := Reconcile(cur, want)
	if !recorded {
		t.Error("the record of a changed template is not rewritten")
	}
	wantLabels := map[string]string{"tier": "core", "new": "", "theirs-now": "changed-by-someone", "operator": "keep", config.NodeGroupLabel: "worker"}
	if !reflect.DeepEqual(next.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", next.Labels, wantLabels)
	}
	if next.Annotations["note"] != "two" || next.Annotations["operator/note"] != "keep" || next.Annotations[LastAppliedAnnotation] != Record(want) {
		t.Errorf("annotations %v", next.Annotations)
	}
	wantTaints := []corev1.Taint{{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
		{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoExecute}}
	if !reflect.DeepEqual(next.Taints, wantTaints) {
		t.Errorf("taints %v, want %v", next.Taints, wantTaints)
	}
	if got, w := Summary(changes), "+label new=, ~label tier=core (was edge), -label gone, ~annotation note=two (was one), +taint dedicated:NoExecute=db, -taint edge:NoSchedule"; got != w {
		t.Errorf("changes\n %s\nwant\n %s", got, w)
	}
	// The input is not modified.
	if cur.Labels["tier"] != "edge" || len(cur.Taints) != 2 {
		t.Errorf("Reconcile changed its input: %v", cur)
	}

	// Applied again: in sync, nothing to record.
	again, changes, recorded := Reconcile(next, want)
	if len(changes) != 0 || recorded || !reflect.DeepEqual(again, next) {
		t.Errorf("second reconcile: changes %v, recorded %v", changes, recorded)
	}
}

// A node that registered with its template's labels (kubelet --node-labels) has no record: it is
// in sync, the record is written, and nothing is removed for want of one.
func TestReconcileWithoutRecord(t *testing.T) {
	cur := Meta{Labels: map[string]string{"tier": "edge", "other": "x"}}
	next, changes, recorded := Reconcile(cur, config.NodeTemplate{Labels: map[string]string{"tier": "edge"}})
	if len(changes) != 0 || !recorded || next.Labels["other"] != "x" {
		t.Errorf("changes %v, recorded %v, labels %v", changes, recorded, next.Labels)
	}
	// An unreadable record counts as none.
	cur.Annotations = map[string]string{LastAppliedAnnotation: "{not json"}
	next, changes, _ = Reconcile(cur, config.NodeTemplate{})
	if len(changes) != 0 || len(next.Labels) != 2 || next.Annotations[LastAppliedAnnotation] != "{}" {
		t.Errorf("changes %v, next %v", changes, next)
	}
}

func TestRecordIsCanonical(t *testing.T) {
	a := config.NodeTemplate{Labels: map[string]string{"b": "1", "a": "2"}, Taints: []config.Taint{{Key: "y", Effect: "NoSchedule"}, {Key: "x", Effect: "NoSchedule"}},
		Annotations: map[string]string{}}
	b := config.NodeTemplate{Labels: map[string]string{"a": "2", "b": "1"}, Taints: []config.Taint{{Key: "x", Effect: "NoSchedule"}, {Key: "y", Effect: "NoSchedule"}}}
	if Record(a) != Record(b) {
		t.Errorf("%s != %s", Record(a), Record(b))
	}
	if a.Taints[0].Key != "y" {
		t.Error("Record reordered its input")
	}
	if got := Record(config.NodeTemplate{}); got != "{}" {
		t.Errorf("empty template recorded as %s", got)
	}
}

func TestGroupOf(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{config.NodeGroupLabel: "front"}, "front"},
		{map[string]string{"node-role.kubernetes.io/control-plane": ""}, "master"},
		{map[string]string{"kubernetes.io/hostname": "x"}, ""},
	} {
		n := &corev1.Node{}
		n.Labels = c.labels
		if got := GroupOf(n); got != c.want {
			t.Errorf("GroupOf(%v) = %q, want %q", c.labels, got, c.want)
		}
	}
}
