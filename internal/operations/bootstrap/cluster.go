package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
	"github.com/dhctl-dev/dhctl/internal/phase"
)

// waitCluster waits, bounded, for every node of the run to be registered and Ready and for the
// API server's /readyz, then gives every node its group's template.
func (b *Bootstrap) waitCluster(ctx context.Context) error {
	k, err := b.kubeClient(ctx)
	if err != nil {
		return err
	}
	want := b.o.Inventory.Len()
	ctx, cancel := context.WithTimeout(ctx, b.o.ClusterTimeout)
	defer cancel()
	var last string
	lastLog := time.Time{}
	for {
		body, rerr := k.Typed().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		nodes, nerr := k.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		switch {
		case rerr != nil:
			last = fmt.Sprintf("API server /readyz: %v %s", rerr, strings.TrimSpace(string(body)))
		case nerr != nil:
			last = fmt.Sprintf("listing nodes: %v", nerr)
		default:
			ready, notReady := nodeReadiness(nodes.Items)
			if len(ready) >= want && len(notReady) == 0 {
				b.o.Log.Info("cluster ready", "nodes", len(ready))
				return b.applyNodeTemplates(ctx, k)
			}
			last = fmt.Sprintf("%d of %d nodes Ready; not Ready: %s", len(ready), want, strings.Join(notReady, ", "))
		}
		if time.Since(lastLog) > 15*time.Second {
			b.o.Log.Info("waiting for the cluster", "status", last)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("waited %v for %d nodes Ready and the API server's /readyz: %s", b.o.ClusterTimeout, want, last)
			}
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func nodeReadiness(nodes []corev1.Node) (ready, notReady []string) {
	for _, n := range nodes {
		ok, why := false, "no Ready condition yet"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ok = c.Status == corev1.ConditionTrue
				why = c.Reason + ": " + c.Message
			}
		}
		if ok {
			ready = append(ready, n.Name)
		} else {
			notReady = append(notReady, n.Name+" ("+why+")")
		}
	}
	return ready, notReady
}

// NodeInfo is one node of the summary.
type NodeInfo struct {
	Name, Roles, Ready, InternalIP, Version string
}

// Nodes lists the cluster's nodes for the summary.
func (b *Bootstrap) Nodes(ctx context.Context) ([]NodeInfo, error) {
	k, err := b.kubeClient(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := k.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []NodeInfo
	for _, n := range list.Items {
		ni := NodeInfo{Name: n.Name, Ready: "NotReady", Version: n.Status.NodeInfo.KubeletVersion}
		var roles []string
		for l := range n.Labels {
			if r, ok := strings.CutPrefix(l, "node-role.kubernetes.io/"); ok {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		ni.Roles = strings.Join(roles, ",")
		if ni.Roles == "" {
			ni.Roles = "<none>"
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ni.Ready = "Ready"
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ni.InternalIP = a.Address
			}
		}
		out = append(out, ni)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteSummary prints what the user needs after a bootstrap: the kubeconfig, the nodes and where
// the time went.
func WriteSummary(w io.Writer, kubeconfig string, nodes []NodeInfo, res phase.Result, total time.Duration) {
	what := "Bootstrap finished"
	for _, p := range res.Phases {
		if p.Status == phase.StatusDryRun {
			what = "Dry run finished (nothing was changed)"
			break
		}
	}
	fmt.Fprintf(w, "\n%s in %v\n", what, total.Round(100*time.Millisecond))
	fmt.Fprintf(w, "Admin kubeconfig: %s\n  (kubectl --kubeconfig %s get nodes)\n", kubeconfig, kubeconfig)
	if len(nodes) > 0 {
		fmt.Fprintf(w, "\n%-24s %-9s %-16s %-16s %s\n", "NODE", "STATUS", "ROLES", "INTERNAL-IP", "VERSION")
		for _, n := range nodes {
			fmt.Fprintf(w, "%-24s %-9s %-16s %-16s %s\n", n.Name, n.Ready, n.Roles, n.InternalIP, n.Version)
		}
	}
	fmt.Fprintf(w, "\n%-36s %-20s %s\n", "PHASE", "STATUS", "TOOK")
	for _, p := range res.Phases {
		took := ""
		if p.Status == phase.StatusRan {
			took = p.Duration.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%-36s %-20s %s\n", p.Path, p.Status, took)
	}
}

// applyNodeTemplates gives every node its group's nodeTemplate in full (at join the kubelet set
// only the labels it may set and the taints) and records it on the node, so that a converge
// right after the bootstrap finds the cluster in sync, and one after a template change removes
// exactly what the template dropped.
func (b *Bootstrap) applyNodeTemplates(ctx context.Context, k *kube.Client) error {
	groups, err := nodegroup.ReadGroups(ctx, k.Dynamic())
	if err != nil {
		return err
	}
	n, err := nodegroup.SyncAll(ctx, k.Typed(), k.Dynamic(), groups, nodegroup.SyncAllOptions{})
	if err != nil {
		return err
	}
	b.o.Log.Info("node templates applied", "nodes_changed", n)
	return nil
}
