package converge

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/etcd"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/nodegroup"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/providers"
)

// How long etcd may take to be healthy: before a change (it should be already), and after one
// (a joined member is a learner until kubeadm promotes it; the others see a removal at once).
const (
	etcdSettleBefore = time.Minute
	etcdSettleAfter  = 3 * time.Minute
)

// controlPlane is the cluster's control plane as a master's join or removal sees it: etcd,
// reached through the first master, and the API server.
type controlPlane struct {
	k     *kube.Client
	first *ssh.Client
	ip    string
	etcd  *etcd.Client
}

// openControlPlane connects to the first master and its etcd.
func openControlPlane(ctx context.Context, o Options, k *kube.Client) (*controlPlane, error) {
	c, ip, err := o.Machines.FirstMaster(ctx)
	if err != nil {
		return nil, fmt.Errorf("reaching the first master, through which etcd is checked: %w", err)
	}
	e, err := etcd.ThroughSSH(ctx, c, ip)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &controlPlane{k: k, first: c, ip: ip, etcd: e}, nil
}

func (cp *controlPlane) close() {
	cp.etcd.Close()
	cp.first.Close()
}

// healthy waits, bounded, for every etcd member to be a healthy voting member and, when want is
// not 0, for there to be want of them; then for the API server's /readyz. It returns the
// members.
func (cp *controlPlane) healthy(ctx context.Context, want int, bound time.Duration) ([]etcd.Member, error) {
	return cp.healthyExcept(ctx, nil, want, bound)
}

// healthyExcept is healthy with the members at addresses (masters about to leave) left out of
// the health check (they still count in want).
func (cp *controlPlane) healthyExcept(ctx context.Context, addresses []string, want int, bound time.Duration) ([]etcd.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		members, err := cp.etcd.CheckHealthyExcept(ctx, addresses...)
		if err == nil && want != 0 && len(members) != want {
			err = fmt.Errorf("etcd has %d members, want %d", len(members), want)
		}
		if err == nil {
			_, err = cp.k.Typed().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err != nil {
				err = fmt.Errorf("the API server's /readyz: %w", err)
			}
		}
		if err == nil {
			return members, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return members, fmt.Errorf("within %s: %w", bound, err)
			}
			return members, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// ensureCertificates makes sure the control-plane certificates a joining master downloads are
// in the cluster: kubeadm keeps them (Secret kube-system/kubeadm-certs, encrypted with the
// certificate key the state dir holds) for two hours after an upload, so a master added later
// needs them uploaded again, from the first master, with the configuration it was made with.
func (cp *controlPlane) ensureCertificates(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err := cp.k.Typed().CoreV1().Secrets("kube-system").Get(gctx, "kubeadm-certs", metav1.GetOptions{})
	cancel()
	switch {
	case err == nil:
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading kube-system/kubeadm-certs: %w", err)
	}
	const script = `set -eu
kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config /etc/kubernetes/dhctl/kubeadm.yaml
`
	if _, err := cp.first.RunScript(ctx, "upload-certs", []byte(script), nil, true); err != nil {
		return fmt.Errorf("uploading the control-plane certificates again on the first master %s (kubeadm keeps them 2 h): %w", cp.ip, err)
	}
	return nil
}

// memberAt is the etcd member on the node at address.
func memberAt(members []etcd.Member, address string) (etcd.Member, bool) {
	for _, m := range members {
		if m.Host() == address {
			return m, true
		}
	}
	return etcd.Member{}, false
}

// planInterruptedJoins finds masters whose join was interrupted after their kubelet registered
// the Node but before their etcd member was added (kubeadm join's control-plane-join phase): a
// Node of the master group with no member at its address. Such a master serves nothing (its
// API server has no etcd of its own), and its machine would be taken for joined ("joined
// before"), so it is planned as a replacement: cleaned, its Node deleted, joined again. Only a
// master on a machine converge can reach (a StaticInstance, or a cloud machine) is planned;
// another is a warning.
func planInterruptedJoins(ctx context.Context, o Options, k *kube.Client, nodes []corev1.Node, plan *Plan) error {
	if o.Machines == nil || o.Machines.FirstMaster == nil {
		return nil
	}
	var suspects []int
	for i, n := range plan.Nodes {
		if n.Group == config.MasterNodeGroup && n.Exists && (n.Action == ActionNone || n.Action == ActionUpdate) {
			suspects = append(suspects, i)
		}
	}
	if len(suspects) < 2 { // the first master alone: it made etcd
		return nil
	}
	cp, err := openControlPlane(ctx, o, k)
	if err != nil {
		return err
	}
	defer cp.close()
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	members, err := cp.etcd.Members(mctx)
	cancel()
	if err != nil {
		return fmt.Errorf("finding masters whose join was interrupted: %w", err)
	}
	addresses := map[string]string{}
	for i := range nodes {
		addresses[nodes[i].Name] = nodegroup.InternalIP(&nodes[i])
	}
	var recorded []clusterstate.Machine
	if o.Cloud != nil {
		if recorded, err = o.Cloud.State.Machines(); err != nil {
			return err
		}
	}
	for _, i := range suspects {
		n := &plan.Nodes[i]
		address := addresses[n.Node]
		if address == "" || address == o.FirstMasterIP {
			continue
		}
		if _, ok := memberAt(members, address); ok {
			continue
		}
		found := false
		for _, in := range o.Instances {
			if in.Address == address {
				n.Instance, n.instance, found = in.Name, in, true
			}
		}
		for _, m := range recorded {
			if m.Name == n.Node {
				n.Machine, n.ssh, found = m.Name, m.SSH, true
				n.infra = &InfraAction{Step: m.Name, Group: m.NodeGroup, Status: InfraInSync, spec: providers.MachineSpec(m)}
				n.infra.spec.Leftover = false
			}
		}
		if !found {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("master %s (%s) has no etcd member (its join was interrupted), and converge knows no machine of it to join again: run kubeadm reset -f on it, delete its Node, then converge", n.Node, address))
			continue
		}
		n.Action, n.Destructive, n.Address, n.Rejoin = ActionReplace, true, address, true
	}
	return nil
}
