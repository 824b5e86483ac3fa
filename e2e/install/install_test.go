// Package install_test is the install phase on the rig: after the product's node bundle made a
// single-node control plane and joined a worker, `dhctl bootstrap-phase install-deckhouse`
// (through an SSH tunnel to the master) installs flannel, the NodeGroups, the platform controller
// and the cluster state; CNI pods run, CoreDNS and the platform controller become Ready, and
// `create-resources` creates a Service plus a test pod on the worker that becomes Ready only once
// it resolved kubernetes.default and reached that Service.
package install_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// resourcesYAML: a Service in front of the platform controller, and a pod pinned to the worker
// that turns Ready only after DNS and the Service answered (its log says how it went).
const resourcesYAML = `apiVersion: v1
kind: Service
metadata:
  name: platform-probe
  namespace: d8-system
spec:
  selector: {app: deckhouse}
  ports:
  - {port: 80, targetPort: 4222}
---
apiVersion: v1
kind: Namespace
metadata:
  name: e2e
---
apiVersion: v1
kind: Pod
metadata:
  name: net-check
  namespace: e2e
spec:
  nodeName: %s
  restartPolicy: Always
  containers:
  - name: check
    image: %s/flannel:v0.26.7
    command: [/bin/sh, -c]
    args:
    - |
      bb=/bin/busybox
      while true; do
        # ping resolves through the resolver's search list, as any program in a pod does.
        $bb ping -c1 -W1 kubernetes.default 2>&1 | $bb head -n1 | $bb tee /tmp/ping
        # The Service by name (busybox's own DNS client), then HTTP through its ClusterIP
        # (busybox-static's wget crashes in the static resolver, so nc speaks HTTP).
        ip=$($bb nslookup platform-probe.d8-system.svc.cluster.local 2>/dev/null | $bb awk '/^Address: /{a=$2} END{print a}')
        echo "platform-probe.d8-system is $ip"
        if grep -q 'PING kubernetes.default (' /tmp/ping && [ -n "$ip" ] &&
           printf 'GET /readyz HTTP/1.0\r\n\r\n' | $bb nc -w 5 "$ip" 80 | $bb tee /dev/stderr | grep -q '^ok'; then
          echo CHECK-OK; touch /tmp/ok; sleep 3600
        fi
        echo retrying; sleep 2
      done
    readinessProbe:
      exec: {command: [/bin/test, -f, /tmp/ok]}
      periodSeconds: 2
    volumeMounts:
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: tmp, emptyDir: {}}
`

func TestInstallOnRig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// The whole configuration a user writes (NodeGroup, the CNI's ModuleConfig): the install
	// applies them.
	l := rigtest.StartLab(ctx, t, lab.Options{Machines: 2, ClusterName: "rig-install"})
	master, worker := l.Machines[0], l.Machines[1]
	resPath := filepath.Join(l.Dir, "resources.yml")
	if err := os.WriteFile(resPath, fmt.Appendf(nil, resourcesYAML, worker.Name, l.ImagesRepo), 0o600); err != nil {
		t.Fatal(err)
	}
	dhctl := func(host string, args ...string) (string, time.Duration, error) {
		full := append(append([]string{}, args...), "--config", l.ConfigPath, "--ssh-host", host)
		full = append(append(full, l.CommonArgs()...), "--cluster-name", l.ClusterName)
		cmd := l.Command(ctx, full...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		t.Logf("dhctl %s: %v in %v\n%s", strings.Join(args, " "), err, took.Round(10*time.Millisecond), out)
		return string(out), took, err
	}
	bundle := []string{"bootstrap-phase", "execute-bashible-bundle", "--version-map-override", l.OverridePath, "--log-format", "json"}
	if _, _, err := dhctl(master.Address.String(), bundle...); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dhctl(worker.Address.String(), append(bundle, "--role", "worker")...); err != nil {
		t.Fatal(err)
	}

	// The install, through an SSH tunnel to the master.
	installOut, took, err := dhctl(master.Address.String(), "bootstrap-phase", "install-deckhouse", "--deckhouse-timeout", "8m", "--log-format", "json")
	if err != nil {
		t.Fatalf("install-deckhouse: %v", err)
	}
	checkPlatformContract(ctx, t, master, installOut)
	t.Logf("FIGURE install-deckhouse on a fresh control plane + worker (CNI, platform Ready): %v", took.Round(100*time.Millisecond))

	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	out, err := master.Run(ctx, kubectl+"get nodes,pods -A -o wide", nil)
	t.Logf("cluster after install (%v):\n%s", err, out)
	rigtest.WaitFor(ctx, t, 3*time.Minute, "both nodes Ready", func() (bool, string) {
		out, err := master.Run(ctx, kubectl+"get nodes --no-headers", nil)
		return err == nil && strings.Count(out, " Ready ") == 2, out
	})
	rigtest.MustRun(ctx, t, master, kubectl+"-n kube-flannel get pods -o custom-columns=P:.status.phase --no-headers | sort -u", "Running")
	rigtest.MustRun(ctx, t, master, kubectl+"-n kube-flannel get ds kube-flannel-ds -o jsonpath={.status.numberReady}", "2")
	rigtest.MustRun(ctx, t, master, kubectl+"-n kube-system get deploy coredns -o jsonpath={.status.readyReplicas}", "2")
	rigtest.MustRun(ctx, t, master, kubectl+"-n d8-system get deploy deckhouse -o jsonpath={.status.readyReplicas}", "1")
	rigtest.MustRun(ctx, t, master, kubectl+"get nodegroup master -o jsonpath={.spec.nodeType}", "Static")
	rigtest.MustRun(ctx, t, master, kubectl+"-n kube-system get secret d8-cluster-configuration -o jsonpath='{.data.cluster-configuration\\.yaml}' | base64 -d", "podSubnetCIDR: 10.111.0.0/16")

	// A second install changes nothing and is quick (checkpoints skip the apply phases; the wait
	// finds everything ready at once).
	_, took, err = dhctl(master.Address.String(), "bootstrap-phase", "install-deckhouse", "--deckhouse-timeout", "2m")
	if err != nil {
		t.Fatalf("second install-deckhouse: %v", err)
	}
	t.Logf("FIGURE install-deckhouse re-run on the installed cluster: %v", took.Round(100*time.Millisecond))

	// Resources: a Service in front of the platform controller, a pod on the worker that must
	// resolve kubernetes.default and reach it.
	_, took, err = dhctl(master.Address.String(), "bootstrap-phase", "create-resources", "--resources", resPath, "--resources-timeout", "3m")
	if err != nil {
		dumpNetwork(ctx, t, master, worker)
		t.Fatalf("create-resources: %v", err)
	}
	t.Logf("FIGURE create-resources (Service + a pod Ready after DNS and Service checks): %v", took.Round(100*time.Millisecond))
	rigtest.MustRun(ctx, t, master, kubectl+"-n e2e logs net-check", "CHECK-OK")
	rigtest.MustRun(ctx, t, master, kubectl+"-n e2e get pod net-check -o jsonpath={.spec.nodeName}", worker.Name)
}

// dumpNetwork logs what explains a pod network that does not carry traffic.
// checkPlatformContract: the platform was installed the way Deckhouse's installer does it, and
// dhctl followed it the way that installer does: the bootstrap lock is gone, install-data
// records the installer, the working pod holds the leader Lease, dhctl saw the modules converge
// and the first converge end in the pod's log, and the release channel was set only after it.
func checkPlatformContract(ctx context.Context, t *testing.T, master *rig.Machine, installOut string) {
	t.Helper()
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf -n d8-system "
	if out, err := master.Run(ctx, kubectl+"get configmap deckhouse-bootstrap-lock 2>&1", nil); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("the bootstrap lock is still there (%v): %s", err, out)
	}
	run := func(cmd string) string {
		out, err := master.Run(ctx, cmd, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return strings.TrimSpace(out)
	}
	if v := run(kubectl + "get configmap install-data -o jsonpath={.data.version}"); v == "" {
		t.Error("install-data records no installer version")
	}
	pod := run(kubectl + "get pods -l app=deckhouse -o jsonpath={.items[0].metadata.name}")
	holder := run(kubectl + "get lease deckhouse-leader-election -o jsonpath={.spec.holderIdentity}")
	if !strings.HasPrefix(holder, pod+".") {
		t.Errorf("the leader Lease is held by %q, not by the platform pod %s", holder, pod)
	}
	lineWith := func(parts ...string) int {
		for i, l := range strings.Split(installOut, "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return i
			}
		}
		t.Errorf("dhctl's output has no line with %q", parts)
		return -1
	}
	lineWith(`"msg":"platform module ready"`, `"module":"cni-flannel"`)
	lineWith(`"msg":"platform module ready"`, `"module":"deckhouse"`)
	if converged, set := lineWith(`"msg":"the platform finished its first converge"`), lineWith(`"msg":"release channel set"`, `"releaseChannel":"Stable"`); converged > set {
		t.Error("dhctl set the release channel before the platform finished its first converge")
	}
	rigtest.MustRun(ctx, t, master, "kubectl --kubeconfig /etc/kubernetes/admin.conf get moduleconfig deckhouse -o jsonpath={.spec.settings.releaseChannel}", "Stable")
	// The controller's own view: no channel at its first converge, then the change to Stable.
	rigtest.WaitFor(ctx, t, 30*time.Second, "the platform logs the release channel change", func() (bool, string) {
		out, _ := master.Run(ctx, kubectl+"logs "+pod, nil)
		return strings.Contains(out, `"msg":"ConvergeModules task done"`) && strings.Contains(out, `"releaseChannel":""`) &&
			strings.Contains(out, `"msg":"release channel changed","from":"","releaseChannel":"Stable"`), out
	})
}

func dumpNetwork(ctx context.Context, t *testing.T, master, worker *rig.Machine) {
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	out, _ := master.Run(ctx, kubectl+"get pods -A -o wide; "+kubectl+"-n kube-flannel logs -l app=flannel --tail 30 --prefix", nil)
	t.Logf("pods and flannel logs:\n%s", out)
	out, _ = master.Run(ctx, kubectl+"-n e2e exec net-check -- cat /etc/resolv.conf; "+kubectl+"-n e2e logs net-check --tail 30", nil)
	t.Logf("net-check pod:\n%s", out)
	dns, _ := master.Run(ctx, kubectl+"-n kube-system get pods -l k8s-app=kube-dns -o jsonpath='{.items[0].status.podIP}'", nil)
	for _, m := range []*rig.Machine{master, worker} {
		out, _ := m.Run(ctx, "set -x; cat /run/flannel/subnet.env; ip -d link show flannel.1; ip addr show cni0; ip route; bridge fdb show dev flannel.1; ip neigh show dev flannel.1; "+
			"sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; ls /etc/cni/net.d; cat /etc/cni/net.d/*; "+
			"timeout 3 bash -c '</dev/tcp/"+strings.TrimSpace(dns)+"/8080' && echo REACHED-COREDNS-POD; "+
			"iptables-save | grep -c . ; iptables-save -t nat | grep -i -e flannel -e KUBE-SVC -e 10.222.0.10 | head -30", nil)
		t.Logf("network of %s:\n%s", m.Name, out)
	}
}
