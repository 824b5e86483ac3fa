package converge

import (
	"context"
	"fmt"
	"time"

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

// apply carries out plan: the NodeGroups of --config, then each node's template, then the
// groups' status. Each step re-reads what it changes, so a re-run after an interruption does
// only what is left.
func apply(ctx context.Context, o Options, k *kube.Client, lock *kube.Lock, desired map[string]config.NodeGroup, plan Plan) error {
	start := time.Now()
	safe := &safePoints{ctx: ctx, lock: lock}
	changed := map[string]bool{}
	for _, g := range plan.NodeGroups {
		changed[g.Name] = g.Action != ActionNone
	}
	for _, want := range o.Groups {
		if !changed[want.GetName()] {
			continue
		}
		if err := safe.check(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := k.Apply(cctx, want)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "NodeGroup %s applied\n", want.GetName())
	}

	updated := 0
	for _, n := range plan.Nodes {
		g, ok := desired[n.Group]
		if !ok {
			continue
		}
		if err := safe.check(); err != nil {
			return err
		}
		// Every node of a known group is synced, not only those the plan updates: a node
		// without the record of its template gets one (and a change made since the plan is
		// caught).
		changes, err := nodegroup.Sync(ctx, k.Typed(), n.Node, nodegroup.Template(g))
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			updated++
			fmt.Fprintf(o.Out, "node %s: %s\n", n.Node, nodegroup.Summary(changes))
			o.Log.Info("node template applied", "node", n.Node, "group", n.Group, "changes", nodegroup.Summary(changes))
		}
	}

	if err := safe.check(); err != nil {
		return err
	}
	if err := writeStatus(ctx, k, desired); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "cluster %s converged: %d node(s) updated in %s\n", o.Name, updated, time.Since(start).Round(time.Millisecond))
	return nil
}

// writeStatus counts every NodeGroup's nodes afresh and writes its status.
func writeStatus(ctx context.Context, k *kube.Client, desired map[string]config.NodeGroup) error {
	nodes, err := nodegroup.ListNodes(ctx, k.Typed())
	if err != nil {
		return err
	}
	status := nodegroup.StatusOf(nodegroup.PlanNodes(desired, nodes))
	for _, name := range sortedKeys(desired) {
		if err := nodegroup.WriteStatus(ctx, k.Dynamic(), name, status[name]); err != nil {
			return err
		}
	}
	return nil
}
