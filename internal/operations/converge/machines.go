package converge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/cleanup"
	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/etcd"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/node"
	"github.com/dhctl-dev/dhctl/internal/nodebundle"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// MachineOptions are what adding, replacing and removing nodes needs: StaticInstances and cloud
// machines alike.
type MachineOptions struct {
	// Nodes joins machines (the cluster's configuration, version map and join data).
	Nodes *nodebundle.Nodes
	State *clusterstate.Local
	Candi fs.FS // the cleanup script
	// FirstMaster opens SSH to the cluster's first master (the control-plane endpoint) and
	// says its address: etcd is checked and changed through it when masters join or leave.
	FirstMaster func(ctx context.Context) (*ssh.Client, string, error)
	// Connect opens SSH to a StaticInstance with its credentials.
	Connect func(ctx context.Context, in nodegroup.StaticInstance, creds nodegroup.SSHCredentials) (*ssh.Client, error)
	// ConnectMachine opens SSH to a cloud machine (host: how it is reached) with the run's SSH
	// settings, as the bootstrap reached it.
	ConnectMachine func(ctx context.Context, host string) (*ssh.Client, error)
	// ReadyTimeout bounds the wait for a joined node to be Ready; DrainTimeout a drain.
	ReadyTimeout time.Duration
	DrainTimeout time.Duration
	Now          func() time.Time
}

// DefaultReadyTimeout bounds the wait for a joined node to be Ready.
const DefaultReadyTimeout = 5 * time.Minute

// changesMasters reports whether the plan adds, replaces or removes control-plane nodes.
func changesMasters(p Plan) bool {
	return slices.ContainsFunc(p.Nodes, func(n NodeAction) bool {
		return n.Group == config.MasterNodeGroup && n.Action != ActionNone && n.Action != ActionUpdate
	})
}

// needsMachines reports whether the plan adds, replaces or removes nodes.
func needsMachines(p Plan) bool {
	return slices.ContainsFunc(p.Nodes, func(n NodeAction) bool { return n.Action != ActionNone && n.Action != ActionUpdate })
}

// connect opens SSH to the machine a node is on.
func connect(ctx context.Context, o Options, n NodeAction) (*ssh.Client, error) {
	if n.Machine != "" {
		return o.Machines.ConnectMachine(ctx, cmp.Or(n.ssh, n.Address))
	}
	return o.Machines.Connect(ctx, n.instance, o.Credentials[n.instance.Credentials])
}

// joinNodes joins machines that are there (static ones, or cloud ones already made). Every one is
// first prepared at once (packages, containerd, kubelet: nothing that needs the cluster), then
// the masters join one at a time (etcd admits one new member at a time), each only while the
// control plane is healthy, then the workers all at once; each is waited for until Ready. A
// join is idempotent: after an interruption a re-run plans the machine again (it has no node
// yet) and the bundle's finished steps are skipped.
func joinNodes(ctx context.Context, o Options, k *kube.Client, cp *controlPlane, safe *safePoints, joins []NodeAction) error {
	if len(joins) == 0 {
		return nil
	}
	st := o.Machines
	join, err := st.State.Join()
	if err != nil {
		return err
	}
	if _, err := st.Nodes.EnsureJoinToken(ctx, k.Typed()); err != nil {
		return err
	}
	out := &lockedWriter{w: o.Out}
	clients := make([]*ssh.Client, len(joins))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	err = each(len(joins), func(i int) error {
		n := joins[i]
		c, err := connect(ctx, o, n)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", n.on(), n.Address, err)
		}
		clients[i] = c
		rep, err := st.Nodes.Prepare(ctx, c, hostOf(n), join.MasterIP)
		if err != nil {
			return fmt.Errorf("preparing %s: %w", n.on(), err)
		}
		fmt.Fprintf(out, "%s prepared in %s on the machine (%s)\n", n.on(), rep.Duration.Round(100*time.Millisecond), stepTimes(rep))
		return nil
	})
	if err != nil {
		return err
	}
	joinOne := func(i int) error {
		n := joins[i]
		var before []etcd.Member
		if n.Group == config.MasterNodeGroup {
			var err error
			if before, err = cp.healthy(ctx, 0, etcdSettleBefore); err != nil {
				return fmt.Errorf("not adding master %s (%s): the control plane is not healthy (%w); fix it first", n.Node, n.Address, err)
			}
			if err := cp.ensureCertificates(ctx); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "joining %s (%s) to node group %s\n", n.on(), n.Address, n.Group)
		start := time.Now()
		rep, err := st.Nodes.Join(ctx, clients[i], hostOf(n))
		if err != nil {
			return fmt.Errorf("%s: %w", n.on(), err)
		}
		fmt.Fprintf(out, "%s: node bundle %s on the machine (%s)\n", n.on(), rep.Duration.Round(100*time.Millisecond), stepTimes(rep))
		name, err := waitReady(ctx, k, n.Address, st.ReadyTimeout)
		if err != nil {
			return fmt.Errorf("%s joined, but %w", n.on(), err)
		}
		if n.Group == config.MasterNodeGroup {
			members, err := cp.healthy(ctx, len(before)+1, etcdSettleAfter)
			if err != nil {
				return fmt.Errorf("master %s joined, but the control plane is not healthy after it: %w", name, err)
			}
			fmt.Fprintf(out, "etcd: %d members, all healthy\n", len(members))
		}
		fmt.Fprintf(out, "node %s (%s) joined and Ready in %s\n", name, n.on(), time.Since(start).Round(time.Second))
		return nil
	}
	var workers []int
	for i, n := range joins {
		if n.Group != config.MasterNodeGroup {
			workers = append(workers, i)
			continue
		}
		if err := safe.check(); err != nil {
			return err
		}
		if err := joinOne(i); err != nil {
			return err
		}
	}
	if err := safe.check(); err != nil {
		return err
	}
	return each(len(workers), func(i int) error { return joinOne(workers[i]) })
}

// hostOf is the machine a node to join is, for the node bundle.
func hostOf(n NodeAction) inventory.Host {
	role := inventory.Worker
	if n.Group == config.MasterNodeGroup {
		role = inventory.Master
	}
	h := inventory.Host{SSH: cmp.Or(n.ssh, n.Address), IP: n.Address, Role: role, NodeGroup: n.Group}
	if n.Machine != "" {
		h.Name = n.Node
	}
	return h
}

// each runs fn(0..n-1) at once and joins their errors.
func each(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lockedWriter serialises the lines of work done at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stepTimes lists the bundle steps that ran and how long each took on the machine.
func stepTimes(rep node.Report) string {
	var parts []string
	for _, st := range rep.Steps {
		if st.Status != node.StepSkipped {
			parts = append(parts, fmt.Sprintf("%s %s", st.Name, st.Duration.Round(100*time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return "every step was done before"
	}
	return strings.Join(parts, ", ")
}

// byRole is the plan's nodes with action, masters first or last; lost masters before the
// others (their etcd members are down: they leave first).
func byRole(p Plan, action string, mastersFirst bool) []NodeAction {
	var masters, workers []NodeAction
	for _, n := range p.Nodes {
		switch {
		case n.Action != action:
		case n.Group == config.MasterNodeGroup:
			masters = append(masters, n)
		default:
			workers = append(workers, n)
		}
	}
	slices.SortStableFunc(masters, func(a, b NodeAction) int {
		switch {
		case a.Lost == b.Lost:
			return 0
		case a.Lost:
			return -1
		}
		return 1
	})
	if mastersFirst {
		return append(masters, workers...)
	}
	return append(workers, masters...)
}

// waitReady waits, bounded, for the node at address to be registered and Ready.
func waitReady(ctx context.Context, k *kube.Client, address string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no node with InternalIP " + address + " is registered"
	for {
		nodes, err := k.Typed().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range nodes.Items {
				n := &nodes.Items[i]
				if nodegroup.InternalIP(n) != address {
					continue
				}
				if nodegroup.Ready(n) {
					return n.Name, nil
				}
				last = "node " + n.Name + " is not Ready: " + readyMessage(n)
			}
		} else {
			last = "listing the nodes: " + err.Error()
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return "", fmt.Errorf("its node was not Ready within %s: %s", timeout, last)
			}
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Reason + " " + c.Message
		}
	}
	return "no Ready condition yet"
}

// removeNodes takes the plan's deleted nodes out, workers first, then masters, one at a time
// (removeNode); a cloud node's machine is then destroyed.
func removeNodes(ctx context.Context, o Options, k *kube.Client, cp *controlPlane, safe *safePoints, plan Plan) error {
	for _, n := range byRole(plan, ActionDelete, false) {
		if err := safe.check(); err != nil {
			return err
		}
		if err := removeNode(ctx, o, k, cp, n); err != nil {
			return err
		}
		if n.Machine != "" {
			if err := destroyMachine(ctx, o, k, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeNode takes a node out of the cluster. A master leaves etcd first, and only while every
// member is healthy (removing one from a cluster whose other member is broken loses quorum);
// then: cordon, drain (bounded), clean the machine (which stops its kubelet, so the Node is not
// registered again), delete the Node. Interrupted anywhere, the Node still exists until the
// machine is clean, so a re-run plans its removal again and each step is redone harmlessly. A
// cloud machine that cannot be reached or cleaned is removed all the same: it is destroyed next.
func removeNode(ctx context.Context, o Options, k *kube.Client, cp *controlPlane, n NodeAction) error {
	st := o.Machines
	if n.Group == config.MasterNodeGroup {
		if err := leaveEtcd(ctx, o, cp, n); err != nil {
			return err
		}
	}
	if n.Exists {
		fmt.Fprintf(o.Out, "removing node %s (%s, %s): cordon, drain\n", n.Node, n.on(), n.Address)
		if err := nodegroup.Cordon(ctx, k.Typed(), n.Node); err != nil {
			return err
		}
		if err := nodegroup.Drain(ctx, k.Typed(), n.Node, st.DrainTimeout); err != nil {
			return err
		}
	}
	cleaned := true
	if err := cleanMachine(ctx, o, n); err != nil {
		lost, lerr := nodeIsLost(ctx, k, n.Node)
		switch {
		case lerr != nil:
			return errors.Join(err, lerr)
		case n.Machine != "":
			fmt.Fprintf(o.Out, "warning: %v; its machine is destroyed next all the same\n", err)
		case lost:
			// A machine gone for good must not keep its Node forever: its kubelet no longer
			// reports, so deleting the Node is safe; should the machine come back, its kubelet
			// registers it again and the next converge removes it again, cleaning it then.
			fmt.Fprintf(o.Out, "warning: %v; its node is lost (its kubelet no longer reports): the Node is deleted, the machine NOT cleaned (if it comes back, run converge again to clean it)\n", err)
			cleaned = false
		default:
			return err
		}
		o.Log.Warn("removing a node whose machine was not cleaned", "node", n.Node, "error", err)
	}
	if err := deleteNode(ctx, k, n.Node); err != nil {
		return err
	}
	if !cleaned {
		fmt.Fprintf(o.Out, "node %s removed; machine %s NOT cleaned\n", n.Node, n.Address)
		return nil
	}
	if n.Machine == "" {
		now := time.Now
		if st.Now != nil {
			now = st.Now
		}
		if _, err := st.State.ForgetHosts([]string{n.Address}, nil, now()); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "node %s removed; machine %s cleaned\n", n.Node, n.Address)
	if n.Group == config.MasterNodeGroup {
		members, err := cp.healthy(ctx, 0, etcdSettleAfter)
		if err != nil {
			return fmt.Errorf("node %s removed, but the control plane is not healthy after it: %w", n.Node, err)
		}
		fmt.Fprintf(o.Out, "etcd: %d members, all healthy\n", len(members))
	}
	return nil
}

// cleanMachine undoes on a node's machine what joining it did, as abort does.
func cleanMachine(ctx context.Context, o Options, n NodeAction) error {
	script, err := cleanup.Script(o.Machines.Candi)
	if err != nil {
		return err
	}
	c, err := connect(ctx, o, n)
	if err != nil {
		return fmt.Errorf("node %s drained, but its machine %s cannot be reached to clean it (the node stays cordoned; run converge again once it is reachable): %w", n.Node, n.Address, err)
	}
	rep := cleanup.Clean(ctx, []*ssh.Client{c}, script, cleanup.Options{Log: o.Log})
	c.Close()
	if !rep.AllCleaned() {
		return fmt.Errorf("node %s drained, but cleaning its machine %s failed (the node stays cordoned; run converge again): %w", n.Node, n.Address, rep.Err())
	}
	return nil
}

// nodeIsLost reports whether a node's kubelet no longer reports (a node already gone is not).
func nodeIsLost(ctx context.Context, k *kube.Client, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := k.Typed().CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading node %s: %w", name, err)
	}
	return nodegroup.Lost(n), nil
}

// deleteNode deletes a Node object; one already gone is no error.
func deleteNode(ctx context.Context, k *kube.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := k.Typed().CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node %s: %w", name, err)
	}
	return nil
}

// leaveEtcd removes a master's etcd member, refusing while any member is unhealthy (removing
// one from a cluster whose other member is broken loses quorum), except its own when its machine
// is lost: that member is down for that reason, and removing it is what heals etcd. A member
// already gone (a re-run) is no error.
func leaveEtcd(ctx context.Context, o Options, cp *controlPlane, n NodeAction) error {
	var except []string
	if n.Lost {
		except = []string{n.Address}
	}
	members, err := cp.healthyExcept(ctx, except, 0, etcdSettleBefore)
	if err != nil {
		return fmt.Errorf("not removing master %s: the control plane is not healthy (%w); removing a member now could lose etcd's quorum: fix it first", n.Node, err)
	}
	m, ok := memberAt(members, n.Address)
	if !ok {
		fmt.Fprintf(o.Out, "master %s has no etcd member (an earlier run removed it)\n", n.Node)
		return nil
	}
	if len(members) < 2 {
		return fmt.Errorf("not removing master %s: it is etcd's only member", n.Node)
	}
	fmt.Fprintf(o.Out, "master %s leaves etcd (%d members, all healthy)\n", n.Node, len(members))
	if err := cp.etcd.RemoveMember(ctx, m.ID); err != nil {
		return err
	}
	if _, err := cp.healthy(ctx, len(members)-1, etcdSettleAfter); err != nil {
		return fmt.Errorf("master %s left etcd, but the control plane is not healthy after it: %w", n.Node, err)
	}
	return nil
}
