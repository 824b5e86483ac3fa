package converge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
)

// safePoints stops a converge between two changes once its lock is lost or it is cancelled.
type safePoints struct {
	ctx  context.Context
	lock *kube.Lock
	lost error
}

func (s *safePoints) check() error {
	if s.lost != nil {
		return s.lost
	}
	select {
	case err := <-s.lock.Lost():
		s.lost = fmt.Errorf("the converge lock was lost (%v): stopped before the next change; run converge again", err)
		return s.lost
	default:
	}
	return context.Cause(s.ctx)
}

// apply carries out plan: --config kept in the cluster, the NodeGroups of --config, the infrastructure changed in place, the
// machines to make and join, the nodes to replace, the nodes to remove, then each node's
// template and the groups' status. Each step re-reads what it changes, so a re-run after an interruption does
// only what is left.
func apply(ctx context.Context, o Options, k *kube.Client, lock *kube.Lock, stored *storedConfig, desired map[string]config.NodeGroup, plan Plan) error {
	start := time.Now()
	safe := &safePoints{ctx: ctx, lock: lock}
	// A plan that changes the control plane starts only from a healthy one: refused before
	// anything changed, not half-way (etcd's health is checked again before each step).
	var cp *controlPlane
	if changesMasters(plan) {
		var err error
		if cp, err = openControlPlane(ctx, o, k); err != nil {
			return err
		}
		defer cp.close()
		if _, err := cp.healthyExcept(ctx, lostLeaving(plan), 0, etcdSettleBefore); err != nil {
			return fmt.Errorf("the plan adds or removes masters, but the control plane is not healthy (%w): changing etcd's membership now could lose its quorum; nothing was changed: fix it first", err)
		}
	}
	// --config first: interrupted after this, a converge without --config goes on from it.
	if stored != nil {
		if err := safe.check(); err != nil {
			return err
		}
		if err := stored.store(ctx, o, k); err != nil {
			return err
		}
	}
	changed := map[string]bool{}
	for _, g := range plan.NodeGroups {
		changed[g.Name] = g.Action != ActionNone
	}
	for _, want := range o.Groups {
		if !changed[want.GetName()] {
			continue
		}
		if err := applyObject(ctx, k, safe, want); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "NodeGroup %s applied\n", want.GetName())
	}

	if err := applyStaticObjects(ctx, o, k, safe); err != nil {
		return err
	}
	if err := applyCloud(ctx, o, k, safe, plan); err != nil {
		return err
	}
	if err := createNodes(ctx, o, k, cp, safe, plan); err != nil {
		return err
	}
	if err := replaceNodes(ctx, o, k, cp, safe, plan); err != nil {
		return err
	}
	if err := removeNodes(ctx, o, k, cp, safe, plan); err != nil {
		return err
	}
	if err := safe.check(); err != nil {
		return err
	}
	updated, err := nodegroup.SyncAll(ctx, k.Typed(), k.Dynamic(), desired, nodegroup.SyncAllOptions{
		Before: safe.check,
		Changed: func(node, group string, changes []nodegroup.Change) {
			fmt.Fprintf(o.Out, "node %s: %s\n", node, nodegroup.Summary(changes))
			o.Log.Info("node template applied", "node", node, "group", group, "changes", nodegroup.Summary(changes))
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "cluster %s converged: %d node(s) updated in %s\n", o.Name, updated, time.Since(start).Round(time.Millisecond))
	return nil
}

// createNodes makes the plan's new cloud machines, node by node, then joins every new machine
// (joinNodes). A node that exists (its machine's state was lost) only has its machine made.
func createNodes(ctx context.Context, o Options, k *kube.Client, cp *controlPlane, safe *safePoints, plan Plan) error {
	var joins []NodeAction
	for _, n := range byRole(plan, ActionCreate, true) {
		if n.Machine != "" {
			if err := safe.check(); err != nil {
				return err
			}
			if err := makeMachine(ctx, o, k, &n); err != nil {
				return err
			}
		}
		if !n.Exists {
			joins = append(joins, n)
		}
	}
	return joinNodes(ctx, o, k, cp, safe, joins)
}

// replaceNodes replaces nodes one at a time, workers first: each is removed as a deleted node
// is (a master leaves etcd first), a cloud node's machine made again, and the machine joined
// again (a master whose join was interrupted is replaced on its own machine). The node is
// deleted before its machine is replaced, so a re-run after an interruption finds a machine
// without a node, and joins it.
func replaceNodes(ctx context.Context, o Options, k *kube.Client, cp *controlPlane, safe *safePoints, plan Plan) error {
	for _, n := range byRole(plan, ActionReplace, false) {
		if err := safe.check(); err != nil {
			return err
		}
		if err := removeNode(ctx, o, k, cp, n); err != nil {
			return err
		}
		if err := safe.check(); err != nil {
			return err
		}
		if n.Machine != "" {
			if err := makeMachine(ctx, o, k, &n); err != nil {
				return err
			}
		}
		n.Exists = false
		if err := joinNodes(ctx, o, k, cp, safe, []NodeAction{n}); err != nil {
			return err
		}
	}
	return nil
}

// lostLeaving lists the addresses of the masters the plan removes or replaces whose machines
// are lost: their etcd members are down for that reason, and removing them (first) is what
// makes etcd healthy again. Any other unhealthy member refuses the plan.
func lostLeaving(p Plan) []string {
	var out []string
	for _, n := range p.Nodes {
		if n.Group == config.MasterNodeGroup && n.Lost && (n.Action == ActionDelete || n.Action == ActionReplace) && n.Address != "" {
			out = append(out, n.Address)
		}
	}
	return out
}

// applyStaticObjects keeps --config's StaticInstances and SSHCredentials in the cluster, so that
// a later converge without --config (a drift alarm, another operator) plans from them. Only
// those that differ are written.
func applyStaticObjects(ctx context.Context, o Options, k *kube.Client, safe *safePoints) error {
	live, err := liveObjects(ctx, k, o.StaticObjects)
	if err != nil {
		return err
	}
	for _, want := range o.StaticObjects {
		if cur, ok := live[objectKey(want)]; ok && len(specDiff(cur, want)) == 0 {
			continue
		}
		err := applyObject(ctx, k, safe, want)
		var notServed *kube.KindNotServedError
		if errors.As(err, &notServed) {
			fmt.Fprintf(o.Out, "warning: the cluster does not serve %s (its CRD, which bootstrap creates, is missing): --config's StaticInstances and SSHCredentials are not kept in it\n", want.GetKind())
			return nil
		}
		if err != nil {
			return fmt.Errorf("keeping %s %s in the cluster: %w", want.GetKind(), want.GetName(), err)
		}
		fmt.Fprintf(o.Out, "%s %s applied\n", want.GetKind(), want.GetName())
	}
	return nil
}

// applyObject applies one object at a safe point, bounded.
func applyObject(ctx context.Context, k *kube.Client, safe *safePoints, obj *unstructured.Unstructured) error {
	if err := safe.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := k.Apply(ctx, obj)
	return err
}
