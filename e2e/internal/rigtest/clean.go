package rigtest

import (
	"context"
	"testing"

	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// cleanChecks are what a machine abort or destroy cleaned holds no more of a cluster: each a
// what and a shell command that succeeds only when it is so.
func cleanChecks() []struct{ What, Cmd string } {
	return []struct{ What, Cmd string }{
		{"kubelet gone", "! systemctl is-active --quiet kubelet && ! test -e /etc/systemd/system/kubelet.service && ! command -v kubelet"},
		{"containerd stopped and removed", "! systemctl is-active --quiet containerd && ! command -v containerd && ! pgrep -x containerd-shim-runc-v2 >/dev/null"},
		{"no /etc/kubernetes (no static pods)", "! test -e /etc/kubernetes"},
		{"no etcd, kubelet or CNI state", "! test -e /var/lib/etcd && ! test -e /var/lib/kubelet && ! test -e /etc/cni && ! test -e /var/lib/cni && ! test -e /opt/cni"},
		{"no control-plane processes", "! pgrep -x kube-apiserver >/dev/null && ! pgrep -x etcd >/dev/null && ! pgrep -x kube-proxy >/dev/null"},
		{"nothing listens on 6443, 2379, 10250", "! ss -Hltn | grep -E ':(6443|2379|10250) '"},
		{"no cni0, no flannel.1", "! ip link show cni0 2>/dev/null && ! ip link show flannel.1 2>/dev/null"},
		{"no kube-proxy, flannel or CNI iptables rules", "! iptables-save | grep -E 'KUBE-|FLANNEL|CNI-'"},
		{"no bundle, step markers or package records", "! test -e /var/lib/dhctl"},
		{"/var/lib/containerd: still a mount point, empty", "mountpoint -q /var/lib/containerd && test -z \"$(ls -A /var/lib/containerd)\""},
		{"no pod mounts left", "! grep -E ' (/var/lib/kubelet|/run/containerd|/var/lib/containerd/)' /proc/self/mounts"},
	}
}

// CheckClean fails the test (going on) for every cleanChecks item m does not pass; after says
// what was run before, for the messages.
func CheckClean(ctx context.Context, tb testing.TB, m *rig.Machine, after string) {
	tb.Helper()
	for _, c := range cleanChecks() {
		if out, err := m.Run(ctx, c.Cmd, nil); err != nil {
			tb.Errorf("%s: after %s, %s: %v\n%s", m.Name, after, c.What, err, out)
		}
	}
}
