package converge

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/etcd"
	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/ssh"
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
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		members, err := cp.etcd.CheckHealthy(ctx)
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
