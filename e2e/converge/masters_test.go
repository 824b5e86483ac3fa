package converge_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
	"github.com/dhctl-dev/dhctl/e2e/internal/testctx"
	"github.com/dhctl-dev/dhctl/e2e/rig"
)

// staticConfig is the lab's cluster whose master and worker groups take StaticInstances: the
// first master's and the bootstrap worker's machines, then two more masters and one more worker.
func staticConfig(masters, workers int, key string) string {
	instance := func(name, role string, machine int) string {
		return fmt.Sprintf(`---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata:
  name: %s
  labels: {role: %s}
spec:
  address: "{{index .Addresses %d}}"
  credentialsRef: {kind: SSHCredentials, name: rig-root}
`, name, role, machine)
	}
	return lab.StaticCluster + fmt.Sprintf(`---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: master
spec:
  nodeType: Static
  staticInstances:
    count: %d
    labelSelector:
      matchLabels: {role: master}
  nodeTemplate:
    labels:
      node-role.kubernetes.io/control-plane: ""
      node-role.kubernetes.io/master: ""
    taints:
    - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
  staticInstances:
    count: %d
    labelSelector:
      matchLabels: {role: worker}
  nodeTemplate:
    labels:
      dhctl.test/tier: edge
    taints:
    - {key: dhctl.test/edge, value: "true", effect: PreferNoSchedule}
---
apiVersion: deckhouse.io/v1alpha1
kind: SSHCredentials
metadata:
  name: rig-root
spec:
  user: root
  privateSSHKey: %s
`, masters, workers, key) +
		instance("si-m1", "master", 0) + instance("si-m2", "master", 2) + instance("si-m3", "master", 3) +
		instance("si-w1", "worker", 1) + instance("si-w2", "worker", 4) +
		lab.CNI + lab.DeckhouseModuleConfig + lab.KubeProxy
}

// TestConvergeMasters scales a static cluster from 1 master + 1 worker to 3 + 2 and back with
// converge, while the API server and a Service (CoreDNS through a NodePort on the worker that
// stays) are asked every 300 ms: the failed requests are reported. The join comes after the join
// token and kubeadm's uploaded certificates are gone (as a day after the bootstrap). A removal
// while another etcd member is down is refused, and done once it is back.
func TestConvergeMasters(t *testing.T) {
	ctx, cancel := testctx.New(t, 30*time.Minute)
	defer cancel()
	start := time.Now()
	l := rigtest.StartLab(ctx, t, lab.Options{Masters: 1, Workers: 1, Machines: 3})
	m := l.Machines
	converge := func(args ...string) []string {
		return append(append([]string{"converge", "--cluster-name", l.ClusterName, "--version-map-override", l.OverridePath}, l.CommonArgs()...), args...)
	}
	out, code, took := run(ctx, t, l, l.BootstrapArgs()...)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s", code, out)
	}
	t.Logf("FIGURE bootstrap, 1 master + 1 worker: %v", took.Round(100*time.Millisecond))

	keyPEM, err := os.ReadFile(l.Rig.SSHKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(keyPEM)
	grow, err := l.WriteConfigFrom("grow.yml", staticConfig(3, 2, key))
	if err != nil {
		t.Fatal(err)
	}
	shrink, err := l.WriteConfigFrom("shrink.yml", staticConfig(1, 1, key))
	if err != nil {
		t.Fatal(err)
	}

	kubectl(ctx, t, l, "-n", "kube-system", "expose", "deployment", "coredns", "--name", "dns-probe", "--type", "NodePort",
		"--port", "53", "--protocol", "UDP", "--overrides", `{"spec":{"ports":[{"port":53,"protocol":"UDP","nodePort":30053}]}}`)
	p := startProbe(ctx, t, l, m[1].Address.String()+":30053")

	for _, gone := range [][]string{
		{"-n", "kube-system", "delete", "secret", "--field-selector", "type=bootstrap.kubernetes.io/token"},
		{"-n", "kube-system", "delete", "secret", "kubeadm-certs", "--ignore-not-found"},
	} {
		kubectl(ctx, t, l, gone...)
	}
	out, code, took = run(ctx, t, l, converge("--config", grow)...)
	if code != 0 {
		t.Fatalf("converge to 3 masters + 2 workers: exit %d", code)
	}
	t.Logf("FIGURE converge 1 + 1 -> 3 + 2 (two control-plane joins one at a time, one worker): %v", took.Round(100*time.Millisecond))
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "joined and Ready in") || strings.HasPrefix(line, "etcd: ") || strings.Contains(line, ": node bundle ") || strings.Contains(line, " prepared in ") {
			t.Logf("FIGURE step: %s", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(out, "etcd: 3 members, all healthy") {
		t.Error("the converge did not report 3 healthy etcd members")
	}
	checkNodes(ctx, t, l, 5, 3)

	for range 3 {
		out, code, took = run(ctx, t, l, converge("--check", "--config", grow)...)
		if code != 0 || !strings.Contains(out, "5 in sync") {
			t.Fatalf("converge --check of 3 + 2: exit %d, want 0 and 5 nodes in sync", code)
		}
		t.Logf("FIGURE converge --check with no changes, 3 masters + 2 workers: %v", took.Round(10*time.Millisecond))
	}
	out, code, took = run(ctx, t, l, converge("--config", grow)...)
	if code != 0 || !strings.Contains(out, "0 node(s) updated") {
		t.Fatalf("converge with no changes: exit %d", code)
	}
	t.Logf("FIGURE converge with no changes (lock, plan, status), 3 masters + 2 workers: %v", took.Round(10*time.Millisecond))

	// An etcd member down (its static pod's manifest moved away): a master's removal is refused.
	third := m[3]
	rigtest.MustRun(ctx, t, third, "mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml && echo moved", "moved")
	rigtest.WaitFor(ctx, t, 2*time.Minute, "etcd stopped on "+third.Address.String(), func() (bool, string) {
		out, _ := third.Run(ctx, "crictl ps --name etcd -q | wc -l", nil)
		return strings.TrimSpace(out) == "0", "etcd containers: " + out
	})
	out, code, _ = run(ctx, t, l, converge("--config", shrink, sane)...)
	if code == 0 || !strings.Contains(out, "the control plane is not healthy") || !strings.Contains(out, "could lose its quorum; nothing was changed") {
		t.Fatalf("removing a master while another etcd member is down: exit %d, want a refusal naming etcd's health", code)
	}
	if got := kubectl(ctx, t, l, "get", "nodes", "-o", "name"); strings.Count(got, "node/") != 5 {
		t.Fatalf("the refused converge removed a node: %s", got)
	}
	rigtest.MustRun(ctx, t, third, "mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml && echo back", "back")
	rigtest.WaitFor(ctx, t, 2*time.Minute, "etcd running again on "+third.Address.String(), func() (bool, string) {
		out, _ := third.Run(ctx, "crictl ps --name etcd --state running -q | wc -l", nil)
		return strings.TrimSpace(out) == "1", "running etcd containers: " + out
	})

	out, code, took = run(ctx, t, l, converge("--config", shrink, sane, "--node-ready-timeout", "3m")...)
	if code != 0 {
		t.Fatalf("converge 3 + 2 -> 1 + 1: exit %d", code)
	}
	t.Logf("FIGURE converge 3 + 2 -> 1 + 1 (a worker, then two masters leaving etcd one at a time): %v", took.Round(100*time.Millisecond))
	if strings.Count(out, "members, all healthy)") != 2 || !strings.Contains(out, "etcd: 1 members, all healthy") {
		t.Error("the masters did not leave etcd one at a time down to 1 member")
	}
	checkNodes(ctx, t, l, 2, 1)
	for _, gone := range []*rig.Machine{m[2], m[3], m[4]} {
		rigtest.CheckClean(ctx, t, gone, "converge removing its node")
	}
	if out, code, _ := run(ctx, t, l, converge("--check", "--config", shrink)...); code != 0 {
		t.Errorf("converge --check of 1 + 1: exit %d\n%s", code, out)
	}
	total, failed, longest := p.stop()
	t.Logf("FIGURE availability during the scaling: %d requests (API server and a Service), %d failed, longest outage %v", total, failed, longest.Round(100*time.Millisecond))
	if total == 0 || longest > 30*time.Second {
		t.Errorf("the API server or the Service stopped answering for %v (%d of %d requests failed)", longest, failed, total)
	}
	t.Logf("FIGURE whole masters converge test: %v", time.Since(start).Round(time.Second))
}

// checkNodes wants nodes Ready nodes and masters etcd pods Running.
func checkNodes(ctx context.Context, t *testing.T, l *lab.Lab, nodes, masters int) {
	t.Helper()
	rigtest.WaitFor(ctx, t, 3*time.Minute, fmt.Sprintf("%d nodes Ready and %d etcd pods Running", nodes, masters), func() (bool, string) {
		ready, _ := l.Kubectl(ctx, "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		etcd, _ := l.Kubectl(ctx, "-n", "kube-system", "get", "pods", "-l", "component=etcd", "--field-selector", "status.phase=Running", "-o", "name")
		return strings.Count(ready, "True") == nodes && strings.Count(ready, "\n") == nodes && strings.Count(etcd, "pod/") == masters,
			fmt.Sprintf("nodes Ready: %q; etcd pods: %q", ready, etcd)
	})
}

// probe asks the API server (/readyz, through the control-plane endpoint) and a Service (a DNS
// query to CoreDNS through a NodePort) every 300 ms and counts what failed.
type probe struct {
	mu            sync.Mutex
	total, failed int
	outageStart   time.Time
	longest       time.Duration
	cancel        context.CancelFunc
	done          chan struct{}
}

func startProbe(ctx context.Context, t *testing.T, l *lab.Lab, dnsAddr string) *probe {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = l.Rig.DialContext
	cfg.Timeout = 2 * time.Second
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Only the rig's CoreDNS, through the rig's namespace: never the machine's resolver.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return l.Rig.DialContext(ctx, "udp", dnsAddr)
	}}
	ctx, cancel := context.WithCancel(ctx)
	p := &probe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			_, apiErr := k.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
			_, dnsErr := resolver.LookupHost(rctx, "kubernetes.default.svc.cluster.local.")
			rcancel()
			if ctx.Err() != nil {
				return
			}
			p.record(apiErr, dnsErr)
		}
	}()
	return p
}

func (p *probe) record(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	bad := false
	for _, err := range errs {
		p.total++
		if err != nil {
			p.failed++
			bad = true
		}
	}
	switch {
	case bad && p.outageStart.IsZero():
		p.outageStart = now
	case !bad && !p.outageStart.IsZero():
		p.longest = max(p.longest, now.Sub(p.outageStart))
		p.outageStart = time.Time{}
	}
}

func (p *probe) stop() (total, failed int, longest time.Duration) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.outageStart.IsZero() {
		p.longest = max(p.longest, time.Since(p.outageStart))
	}
	return p.total, p.failed, p.longest
}
