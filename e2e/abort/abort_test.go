// Package abort_test is `dhctl bootstrap-phase abort` on the rig, the real binary in the rig's
// network namespace: a node bundle that failed at its packages step is cleaned away; then the
// machine becomes a control plane through the node bundle (plus the leftovers a CNI leaves: cni0, flannel.1, its iptables chain and files), abort removes all of
// it (no kubelet, /etc/kubernetes, static pods, listening 6443/2379/10250, cni0, kube-proxy
// rules; containerd's bind-mounted /var/lib/containerd emptied but kept), the state dir forgets
// the cluster, preflight finds no leftovers, a second abort is harmless, and the node bundle
// then succeeds again on the same machine; a host that cannot be reached is reported while the
// others are cleaned.
package abort_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
)

const cluster = "rig-abort"

// cniLeftovers is what flannel leaves on a node (the node bundle alone installs no CNI):
// its bridge and VXLAN device, its masquerade chain, its configuration and plugin.
const cniLeftovers = `set -e
ip link add cni0 type bridge && ip link set cni0 up
ip link add flannel.1 type vxlan id 1 dstport 8472 dev eth0 2>/dev/null || ip link add flannel.1 type bridge # no vxlan module in the rig: only the name matters here
iptables -t nat -N FLANNEL-POSTRTG
iptables -t nat -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
iptables -t nat -A FLANNEL-POSTRTG -s 10.111.0.0/16 -d 10.111.0.0/16 -j RETURN
mkdir -p /etc/cni/net.d /run/flannel /var/lib/cni/networks/cbr0
echo '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"}]}' >/etc/cni/net.d/10-flannel.conflist
echo FLANNEL_SUBNET=10.111.0.1/24 >/run/flannel/subnet.env
cp /opt/cni/bin/bridge /opt/cni/bin/flannel
`

func TestAbort(t *testing.T) {
	ctx, cancel := testctx.New(t, 12*time.Minute)
	defer cancel()
	start := time.Now()
	// One machine and a configuration without the platform's documents: the node bundle alone
	// makes the control plane abort removes. Every image is published all the same: preflight
	// asks for each one a bootstrap would pull.
	l := rigtest.StartLab(ctx, t, lab.Options{Machines: 1, ClusterName: cluster,
		Config: lab.StaticCluster + lab.KubeProxy})
	m := l.Machines[0]
	host := m.Address.String()
	bundle := func() {
		t.Helper()
		out, code, took := run(ctx, t, l, "bootstrap-phase", "execute-bashible-bundle", "--config", l.ConfigPath,
			"--ssh-host", host, "--cluster-name", cluster, "--version-map-override", l.OverridePath)
		if code != 0 {
			t.Fatalf("execute-bashible-bundle: exit %d\n%s", code, out)
		}
		t.Logf("FIGURE node bundle on %s: %v", m.Name, took.Round(100*time.Millisecond))
	}
	abortRun := func(extra ...string) (string, int, time.Duration) {
		t.Helper()
		return run(ctx, t, l, append([]string{"bootstrap-phase", "abort", "--cluster-name", cluster}, extra...)...)
	}
	clusterState := filepath.Join(l.StateDir, cluster)

	// 0. A bootstrap that fails half-way (a package whose sum does not match stops the packages
	// step after the others were installed), then abort: nothing of it is left.
	override, err := os.ReadFile(l.OverridePath)
	if err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`(- \{name: "kubectl", sha256: )[0-9a-f]{64}`).ReplaceAll(override, []byte("${1}"+strings.Repeat("0", 64)))
	badPath := filepath.Join(l.Dir, "bad-override.yml")
	if bytes.Equal(bad, override) {
		t.Fatal("could not tamper with kubectl's sum in the override")
	}
	if err := os.WriteFile(badPath, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code, _ := run(ctx, t, l, "bootstrap-phase", "execute-bashible-bundle", "--config", l.ConfigPath,
		"--ssh-host", host, "--cluster-name", cluster, "--version-map-override", badPath)
	if code == 0 || !strings.Contains(out, "047_kubernetes_packages") {
		t.Fatalf("the tampered bundle did not fail at the packages step: exit %d\n%s", code, out)
	}
	installed, _ := m.Run(ctx, "ls /var/lib/dhctl/packages /var/lib/dhctl/bashible/done", nil)
	t.Logf("left by the failed bundle: %s", strings.Join(strings.Fields(installed), " "))
	out, code, took := abortRun("--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 0 || !strings.Contains(out, host+": cleaned") {
		t.Fatalf("abort after a failed bundle: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE abort after a bundle failed at the packages step: %v", took.Round(100*time.Millisecond))
	if out, err := m.Run(ctx, "! test -e /var/lib/dhctl && ! test -e /etc/sysctl.d/90-dhctl.conf && ! command -v kubelet && ! command -v containerd && ! test -e /opt/cni", nil); err != nil {
		t.Fatalf("after aborting the failed bundle, leftovers remain: %v\n%s", err, out)
	}

	// 1. A control plane on a fresh machine, kube-proxy's rules in place, and a CNI's leftovers.
	bundle()
	rigtest.MustRun(ctx, t, m, "systemctl is-active kubelet containerd", "active\nactive")
	if _, err := os.Stat(filepath.Join(clusterState, "node", "hosts.json")); err != nil {
		t.Fatalf("the node bundle did not record its host for abort: %v", err)
	}
	rigtest.WaitFor(ctx, t, 3*time.Minute, "kube-proxy's iptables rules", func() (bool, string) {
		out, err := m.Run(ctx, "iptables-save -t nat | grep -c KUBE-SERVICES", nil)
		return err == nil && strings.TrimSpace(out) != "0", out
	})
	if out, err := m.Run(ctx, cniLeftovers, nil); err != nil {
		t.Fatalf("making the CNI's leftovers: %v\n%s", err, out)
	}
	rigtest.MustRun(ctx, t, m, `for p in 6443 2379 10250; do ss -Hltn "sport = :$p" | grep -q . || exit 1; done; echo listening`, "listening")

	// 2. Without confirmation nothing happens (no terminal: stdin is empty).
	if out, code, _ := abortRun("--ssh-host", host); code != 3 || !strings.Contains(out, "abort not confirmed") {
		t.Fatalf("unconfirmed abort: exit %d, want 3\n%s", code, out)
	}
	rigtest.MustRun(ctx, t, m, "systemctl is-active kubelet", "active")

	// 3. Abort: every trace of the cluster is gone, the machine's own mount stays.
	out, code, took = abortRun("--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 0 {
		t.Fatalf("abort: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE abort of a single-node control plane: %v", took.Round(100*time.Millisecond))
	for _, want := range []string{host + ": cleaned", "kubeadm reset -f", "deleted interface cni0", "deleted interface flannel.1",
		"removed the iptables rules", "emptied /var/lib/containerd (a mount point: kept)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the abort report lacks %q", want)
		}
	}
	rigtest.CheckClean(ctx, t, m, "abort")
	for _, gone := range []string{"checkpoints", "node", "kubeconfig"} {
		if _, err := os.Stat(filepath.Join(clusterState, gone)); !os.IsNotExist(err) {
			t.Errorf("the state dir still holds %s after abort (%v)", gone, err)
		}
	}

	// 4. Preflight finds the machine clean (a state dir of its own: it is another command's).
	pout, pcode, _ := run(ctx, t, l, "bootstrap-phase", "preflight", "--config", l.ConfigPath, "--ssh-host", host,
		"--cluster-name", cluster+"-preflight")
	for _, check := range []string{"leftovers", "ports"} {
		if !regexp.MustCompile(`(?m)^root@` + regexp.QuoteMeta(host) + `:22\s+` + check + `\s+ok\s`).MatchString(pout) {
			t.Errorf("preflight after abort: %s is not ok", check)
		}
	}
	if pcode != 0 {
		t.Errorf("preflight after abort: exit %d, want 0", pcode)
	}

	// 5. A second abort is harmless and finds nothing to do.
	out, code, _ = abortRun("--ssh-host", host, "--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 0 || !strings.Contains(out, host+": cleaned") || !strings.Contains(out, "already clean") {
		t.Fatalf("second abort: exit %d, want 0 and nothing to remove\n%s", code, out)
	}

	// 6. The machine is reusable: the node bundle runs every step again and succeeds.
	bundle()
	rigtest.MustRun(ctx, t, m, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz", "ok")

	// 6b. What a kubeadm init killed early leaves (certificates and kubeconfigs, no static pods,
	// no kubelet configuration; the step not marked done) is not taken for a control plane that
	// is slow to start: the bundle initialises again instead of waiting for an API server that
	// can never answer.
	rigtest.MustRun(ctx, t, m, `cfg=/etc/kubernetes/dhctl/kubeadm.yaml; kubeadm reset -f >/dev/null 2>&1 &&
		rm -f /etc/kubernetes/dhctl/init-complete /var/lib/dhctl/bashible/done/060_kubeadm &&
		kubeadm init phase certs all --config $cfg >/dev/null && kubeadm init phase kubeconfig all --config $cfg >/dev/null &&
		test -f /etc/kubernetes/admin.conf && test ! -e /etc/kubernetes/manifests/kube-apiserver.yaml && echo left`, "left")
	bundle()
	rigtest.MustRun(ctx, t, m, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz", "ok")
	rigtest.MustRun(ctx, t, m, "grep -c 'an unfinished kubeadm init left files behind' /var/lib/dhctl/bashible/log/060_kubeadm.log", "1")

	// 7. Clean up the machine through the product too, and time it.
	if out, code, took = abortRun("--yes-i-am-sane-and-i-understand-what-i-am-doing"); code != 0 {
		t.Fatalf("final abort: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE abort (second time, after a re-bootstrap): %v", took.Round(100*time.Millisecond))

	// 8. A host that cannot be reached is reported and the others are still cleaned; it stays in
	// the state dir's record, so the next abort tries it again.
	out, code, took = abortRun("--ssh-host", host, "--ssh-host", unreachable, "--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 1 || !strings.Contains(out, host+": cleaned") || !strings.Contains(out, unreachable+": unreachable") {
		t.Fatalf("abort with an unreachable host: exit %d, want 1 with %s cleaned and %s unreachable\n%s", code, host, unreachable, out)
	}
	if data, err := os.ReadFile(filepath.Join(clusterState, "node", "hosts.json")); err != nil || !strings.Contains(string(data), unreachable) || strings.Contains(string(data), `"`+host+`"`) {
		t.Errorf("after the partial abort the state dir records %q (%v); want only %s", data, err, unreachable)
	}
	t.Logf("FIGURE abort with one unreachable host: %v; whole test %v", took.Round(100*time.Millisecond), time.Since(start).Round(time.Second))
}

// unreachable is an address on the rig's bridge network where no machine is.
const unreachable = "10.77.1.199"

// run runs dhctl with args and the lab's SSH settings and state dir, and returns its combined
// output and exit code.
func run(ctx context.Context, tb testing.TB, l *lab.Lab, args ...string) (string, int, time.Duration) {
	tb.Helper()
	out, code, took := rigtest.Run(tb, l.Command(ctx, append(append([]string{}, args...), l.CommonArgs()...)...))
	tb.Logf("dhctl %s: exit %d in %v\n%s", strings.Join(args[:2], " "), code, took.Round(10*time.Millisecond), out)
	return out, code, took
}
